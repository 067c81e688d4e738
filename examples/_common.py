"""Shared by the calculator examples: a reproducible trained model and the output folder.

The examples that drive ASE need a trained hybrid model. Give one with ``--model PATH``
(for instance ``runs/hybridpot/model.pt`` from ``hybridpot train``); without it,
:func:`obtain_model` makes one the way a user would: it generates Tosi-Fumi NaCl
reference data with :func:`hybridpot.reference.make_demo_data` (64-ion crystals with
strain, vacancy pairs and the melt, labelled with exact energies, forces, stress and the
true ±1 charges) and trains a small hybrid model on it with :mod:`hybridpot.train`. The
model is cached in ``OUTPUT/model-quick/model.pt`` (``--quick``) or
``OUTPUT/model-full/model.pt``, so the next example with the same ``--output`` reuses it.
Both recipes are fixed and seeded: on the same machine they give the same model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hybridpot.demo import DEMO_MODEL

#: Default ``--output``: relative to the current folder, like ``hybridpot demo``'s.
DEFAULT_OUTPUT = "examples-output"

#: The network: the demo's small hybrid model (2 layers, l <= 2, 5 Å cutoff, point charges
#: like the Tosi-Fumi ions), so the examples and ``hybridpot demo`` train the same thing.
MODEL = DEMO_MODEL

#: Training settings shared by both recipes.
TRAINING = {
    "dtype": "float32",
    "seed": 0,
    "optim": {"ema_decay": 0.99},
    "schedule": {"kind": "cosine", "min_lr": 1e-4},
    # Energy per atom, forces, stress and the reference charges (±1 e).
    "loss": {"energy": 1.0, "forces": 10.0, "stress": 100.0, "charges": 1.0},
    "quiet": True,
}

#: The two recipes: structures per data file and training settings. Measured on one
#: core of the shared 2-core machine: ``quick`` ~25 s (validation: 15 meV/atom, 120 meV/Å,
#: charges within 0.09 e of ±1); ``full`` ~2 min (1.7 meV/atom, 31 meV/Å, 0.009 e).
RECIPES = {
    "quick": {
        "data": {"n_train": 24, "n_validation": 8, "n_test": 4, "n_large": 1, "n_slab": 2},
        "training": {"epochs": 20, "batch_size": 2, "optim": {"lr": 0.03}},
    },
    "full": {
        "data": {"n_train": 96, "n_validation": 16, "n_test": 16, "n_large": 2, "n_slab": 4},
        "training": {"epochs": 30, "batch_size": 4, "optim": {"lr": 0.02}},
    },
}


def add_common_arguments(parser: argparse.ArgumentParser, *, model: bool = True) -> None:
    """Add ``--quick``, ``--output DIR`` and (with ``model``) ``--model PATH`` to ``parser``."""
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of seconds to a minute on one core"
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help=f"folder for the files this example writes (default: {DEFAULT_OUTPUT})",
    )
    if model:
        parser.add_argument(
            "--model",
            default=None,
            help="a trained model file (hybridpot train's model.pt); default: train a small "
            "one on Tosi-Fumi NaCl data, cached in OUTPUT/model-{quick,full}/model.pt",
        )


def obtain_model(model_path: str | None, output: str | Path, quick: bool) -> Path:
    """The path of a trained model: ``model_path`` if given, else the cached or a new one.

    Args:
        model_path: a model file written by ``hybridpot train`` / ``save_model``, or None.
        output: the examples' output folder (the cache lives in ``model-quick`` or
            ``model-full`` inside it).
        quick: use the quick recipe (:data:`RECIPES`).

    Returns:
        Path of the model file.

    Raises:
        ValueError: ``model_path`` is given but is not a file.
    """
    if model_path is not None:
        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"--model: expected a model file, got {str(path)!r} (not a file)")
        print(f"model: {path}")
        return path
    recipe = "quick" if quick else "full"
    folder = Path(output) / f"model-{recipe}"
    path = folder / "model.pt"
    if path.is_file():
        # model.pt is written once, at the end of a finished training run.
        print(f"model: reusing the cached {recipe} model {path}")
        return path

    from hybridpot.reference import DemoPreset, MDSettings, make_demo_data
    from hybridpot.train import config_from_dict, train

    recipe_settings = RECIPES[recipe]
    # Short runs for the quick data (frames 10 fs apart); the full data uses the
    # generator's default sampling (frames 50 fs apart, decorrelated).
    md = MDSettings(equilibration_steps=10, stride=5, frames_per_run=4) if quick else MDSettings()
    start = time.perf_counter()
    print(f"model: none given; generating Tosi-Fumi NaCl data in {folder / 'data'} ...")
    preset = DemoPreset(**recipe_settings["data"], md=md)
    files = make_demo_data(folder / "data", seed=0, preset=preset)
    data_seconds = time.perf_counter() - start
    training = recipe_settings["training"]
    print(
        f"model: training a small hybrid model ({recipe} recipe, {training['epochs']} epochs) ..."
    )
    config = config_from_dict(
        {
            **TRAINING,
            **training,
            "optim": {**TRAINING["optim"], **training["optim"]},
            "data": {"train": str(files["train"]), "valid": str(files["validation"])},
            "model": dict(MODEL),
            "output_dir": str(folder),
            "plots": not quick,
        }
    )
    result = train(config, overwrite=True)
    print(
        f"model: {path} (data {data_seconds:.0f} s, training "
        f"{time.perf_counter() - start - data_seconds:.0f} s; validation force RMSE "
        f"{result.metrics['forces_rmse']:.0f} meV/Å, charge MAE "
        f"{result.metrics['charges_mae']:.0f} me)"
    )
    return path
