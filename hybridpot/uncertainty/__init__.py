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
from .selection import (
    Selection,
    greedy_selection,
    random_selection,
    select_structures,
    structure_uncertainty,
)

__all__ = [
    "LastLayerUncertainty",
    "Selection",
    "calibration_curve",
    "calibration_factor",
    "calibration_metrics",
    "fit_uncertainty",
    "greedy_selection",
    "last_layer_features",
    "miscalibration_area",
    "plot_calibration",
    "random_selection",
    "select_structures",
    "spearman",
    "structure_uncertainty",
]
