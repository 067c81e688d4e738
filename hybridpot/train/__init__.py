"""Training and evaluation: data, statistics, losses, metrics, the trainer, checkpoints.

The usual entry points are :func:`load_config` (YAML + ``key=value`` overrides),
:func:`train` (or :class:`Trainer` for more control) and :func:`evaluate_structures`.
Names are imported on first use, so ``hybridpot.train.config`` (and the command line's
start) does not pay for torch and matplotlib.
"""

import importlib

_LAZY = {
    "ConfigError": "schema",
    "DataConfig": "config",
    "LossConfig": "config",
    "OptimConfig": "config",
    "ScheduleConfig": "config",
    "TrainConfig": "config",
    "apply_overrides": "config",
    "config_from_dict": "config",
    "load_config": "config",
    "save_config": "config",
    "GraphLoader": "dataset",
    "extract_labels": "dataset",
    "load_graphs": "dataset",
    "random_split": "dataset",
    "read_structures": "dataset",
    "ExponentialMovingAverage": "ema",
    "evaluate_structures": "evaluate",
    "predict": "evaluate",
    "write_predictions": "evaluate",
    "Loss": "loss",
    "Metrics": "metrics",
    "format_table": "metrics",
    "dataset_statistics": "statistics",
    "fit_atomic_energies": "statistics",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "train_step": "steps",
    "Trainer": "trainer",
    "TrainResult": "trainer",
    "train": "trainer",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
