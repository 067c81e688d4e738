"""Calibrated uncertainties (last-layer prediction rigidity) and structure selection."""

from .calibration import (
    calibration_curve,
    calibration_factor,
    calibration_metrics,
    miscalibration_area,
    plot_calibration,
    spearman,
)
from .fit import fit_uncertainty, last_layer_features
from .llpr import LastLayerUncertainty

__all__ = [
    "LastLayerUncertainty",
    "calibration_curve",
    "calibration_factor",
    "calibration_metrics",
    "fit_uncertainty",
    "last_layer_features",
    "miscalibration_area",
    "plot_calibration",
    "spearman",
]
