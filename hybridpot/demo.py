"""The main job: fit a charge-aware potential and its short-range twin, compare them.

``hybridpot demo`` (or :func:`run_demo`):

1. generates Tosi–Fumi NaCl reference data with ASE molecular dynamics
   (:mod:`hybridpot.reference`): 64-ion crystals with strains, vacancy pairs and the
   melt for training, plus held-out larger cells and a (100) slab never seen in training;
2. trains a hybrid model (network + exact Coulomb of its learned charges) and a
   short-range-only twin of the same network and size, with the same data, loss and budget;
3. evaluates both on the held-out sets and prints a side-by-side table of energy, force
   and stress errors and of the learned charges against the true ±1;
4. writes the data, the models, training logs, plots and ``demo_results.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ase.io
import numpy as np

#: The network shared by both models: small enough to train in minutes on 2 CPU cores.
DEMO_MODEL = {
    "cutoff": 5.0,
    "num_layers": 2,
    "hidden_irreps": "16x0e + 8x1o",
    "l_max": 2,
    "num_radial": 8,
    "radial_mlp": [32],
    # The reference charges are point charges; the network absorbs any short-range rest.
    "sigma_q": 0.0,
    # The models fit the true ionic charges (loss.charges): with physical charges the full
    # Coulomb law is exact at every range, so no pair is screened (docs/theory.md §2.5).
    "coulomb_split": "none",
    "coulomb_accuracy": 1e-4,
}

#: Training settings shared by both models (same data, loss and budget).
DEMO_TRAINING = {
    "epochs": 12,
    "batch_size": 4,
    "dtype": "float32",
    "seed": 0,
    "optim": {"lr": 1e-2, "ema_decay": 0.99},
    "schedule": {"kind": "cosine", "min_lr": 1e-4},
    # Energy per atom, forces, stress, and the reference charges (which the short-range
    # twin also fits: its charges do not enter its energy, so this costs it nothing).
    "loss": {"energy": 1.0, "forces": 10.0, "stress": 100.0, "charges": 1.0},
}

QUICK_TRAINING = {"epochs": 2}

TEST_SETS = {
    "test": "64-ion bulk (held out)",
    "test_large": "216-ion crystal",
    "test_slab": "(100) slab, pbc T,T,F",
}


def _train(name: str, coulomb: bool, files: dict, output: Path, quick: bool, quiet: bool):
    from .train import config_from_dict, train

    settings = {**DEMO_TRAINING, **(QUICK_TRAINING if quick else {})}
    config = config_from_dict(
        {
            **settings,
            "data": {"train": str(files["train"]), "valid": str(files["validation"])},
            "model": {**DEMO_MODEL, "coulomb": coulomb},
            "output_dir": str(output / name),
            "quiet": quiet,
        }
    )
    start = time.perf_counter()
    result = train(config, overwrite=True)
    return result, time.perf_counter() - start


def _charge_error(images, predictions) -> float:
    """Mean |q_learned - q_true| (e) over all atoms (true charges read like training labels)."""
    from .train import extract_labels

    errors = []
    for atoms, prediction in zip(images, predictions):
        true = extract_labels(atoms)[0]["charges"]
        errors.append(np.abs(prediction["charges"] - true.ravel()))
    return float(np.concatenate(errors).mean())


def _evaluate(model, files: dict) -> dict:
    from .train import evaluate_structures

    results = {}
    for key in TEST_SETS:
        images = ase.io.read(files[key], ":")
        metrics, _, predictions = evaluate_structures(model, images, source=str(files[key]))
        metrics["charge_mean_abs_error_e"] = _charge_error(images, predictions)
        results[key] = metrics
    return results


def format_comparison(results: dict) -> str:
    """A Markdown table: one row per (test set, property), hybrid next to short-range."""
    lines = [
        "| test set | property | hybrid | short-range | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    rows = [
        ("energy_rmse", "energy RMSE (meV/atom)"),
        ("forces_rmse", "force RMSE (meV/Å)"),
        ("stress_rmse", "stress RMSE (meV/Å³)"),
        ("charge_mean_abs_error_e", "charges: mean |q - q_true| (e)"),
    ]
    for key, label in TEST_SETS.items():
        for metric, name in rows:
            h = results["hybrid"]["test"][key].get(metric)
            s = results["short_range"]["test"][key].get(metric)
            if h is None or s is None:
                continue
            ratio = s / h if h > 0 else float("inf")
            lines.append(f"| {label} | {name} | {h:.3f} | {s:.3f} | {ratio:.1f}× |")
    return "\n".join(lines)


def run_demo(output_dir: str = "demo-output", quick: bool = False, quiet: bool = False) -> dict:
    """Generate data, train the hybrid and its short-range twin, evaluate and compare.

    Args:
        output_dir: folder for data, models, logs, plots and ``demo_results.json``.
        quick: a tiny data set and 2 epochs (a smoke run in well under a minute).
        quiet: no progress bars or per-epoch lines.

    Returns:
        The results written to ``demo_results.json``: per model the training time, the
        parameter count and the metrics of every test set.
    """
    from .reference import make_demo_data

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    print(f"[1/3] generating Tosi-Fumi NaCl reference data in {output / 'data'} ...", flush=True)
    files = make_demo_data(output / "data", seed=0, quick=quick)
    data_time = time.perf_counter() - start

    results = {"data_seconds": data_time, "quick": quick}
    for step, (name, coulomb) in enumerate((("hybrid", True), ("short_range", False)), 2):
        kind = "hybrid (network + Coulomb)" if coulomb else "short-range twin"
        print(f"[{step}/3] training the {kind} ...", flush=True)
        result, seconds = _train(name, coulomb, files, output, quick, quiet)
        results[name] = {
            "train_seconds": seconds,
            "parameters": sum(p.numel() for p in result.model.parameters()),
            "best_epoch": result.best_epoch,
            "test": _evaluate(result.model, files),
        }
    results["total_seconds"] = time.perf_counter() - start
    table = format_comparison(results)
    (output / "demo_results.json").write_text(json.dumps(results, indent=1))
    (output / "demo_results.md").write_text(table + "\n")
    print()
    print(table)
    print()
    print(
        f"parameters: hybrid {results['hybrid']['parameters']}, short-range "
        f"{results['short_range']['parameters']}; data {data_time:.0f} s, training "
        f"{results['hybrid']['train_seconds']:.0f} s + "
        f"{results['short_range']['train_seconds']:.0f} s, total {results['total_seconds']:.0f} s"
    )
    print(f"models, logs, parity plots and learning curves: {output}/hybrid, {output}/short_range")
    return results
