"""Training and evaluation: configs, losses, metrics, the trainer, checkpoints.

The data-set reader and statistics live in :mod:`hybridpot.data` (``dataset``,
``statistics``); their public names are re-exported here.

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
    "GraphLoader": "hybridpot.data.dataset",
    "ShardedLoader": "hybridpot.data.loader",
    "PackedDataset": "hybridpot.data.packed",
    "pack_structures": "hybridpot.data.packed",
    "Distributed": "distributed",
    "freeze_parameters": "finetune",
    "transfer_weights": "finetune",
    "extract_labels": "hybridpot.data.dataset",
    "load_graphs": "hybridpot.data.dataset",
    "random_split": "hybridpot.data.dataset",
    "read_structures": "hybridpot.data.dataset",
    "ExponentialMovingAverage": "ema",
    "evaluate_structures": "evaluate",
    "predict": "evaluate",
    "write_predictions": "evaluate",
    "uncertainty_errors": "evaluate",
    "ActiveConfig": "active",
    "ActiveResult": "active",
    "LabelConfig": "active",
    "active_config_from_dict": "active",
    "load_active_config": "active",
    "run_active": "active",
    "ExploreConfig": "explore",
    "explore": "explore",
    "label_structures": "explore",
    "load_calculator": "explore",
    "Loss": "loss",
    "Metrics": "metrics",
    "format_table": "metrics",
    "dataset_statistics": "hybridpot.data.statistics",
    "fit_atomic_energies": "hybridpot.data.statistics",
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
        module = _LAZY[name]  # a submodule of this package, or a full module path
        module = module if "." in module else f"{__name__}.{module}"
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
