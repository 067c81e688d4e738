"""Calibrated uncertainties from one model, structure selection and MD safety.

- :func:`fit_uncertainty`: last-layer prediction rigidity (LLPR) fitted on the training
  set and calibrated on the validation set (:mod:`.llpr`, :mod:`.features`, :mod:`.fit`);
- :func:`calibration_metrics`, :func:`plot_calibration` (:mod:`.calibration`);
- :func:`select_structures`: uncertainty x diversity selection (:mod:`.selection`);
- :class:`EnsembleModel`, :func:`train_ensemble`: the deep-ensemble reference
  (:mod:`.ensemble`);
- :class:`UncertaintyGuard`: stop or flag MD past a force-uncertainty threshold (:mod:`.md`).

See ``docs/uncertainty.md``.
"""

from .calibration import (
    calibration_curve,
    calibration_factor,
    calibration_metrics,
    miscalibration_area,
    plot_calibration,
    spearman,
)
from .ensemble import (
    EnsembleModel,
    calibrate_ensemble,
    load_ensemble,
    save_ensemble,
    train_ensemble,
)
from .fit import fit_uncertainty, last_layer_features
from .llpr import LastLayerUncertainty
from .md import UncertaintyExceeded, UncertaintyGuard
from .selection import (
    Selection,
    greedy_selection,
    random_selection,
    select_structures,
    structure_uncertainty,
)

__all__ = [
    "EnsembleModel",
    "calibrate_ensemble",
    "load_ensemble",
    "save_ensemble",
    "train_ensemble",
    "LastLayerUncertainty",
    "Selection",
    "UncertaintyExceeded",
    "UncertaintyGuard",
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
