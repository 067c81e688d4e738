"""Active against random selection on Tosi-Fumi NaCl: learning curves and calibration.

A labelled pool of 64-ion NaCl configurations (crystals with strain and shear at
300-1000 K, vacancy pairs, (100) slabs, the melt at 1500-2000 K; Langevin MD with the
built-in Tosi-Fumi reference, :mod:`hybridpot.reference`) stands in for the labelling
calculator: a strategy sees only positions, and a picked structure's reference labels
are read from the pool (identical to labelling it on demand with the same reference).

Both strategies start from the same few crystals and, each round, add ``--per-round``
structures: "active" by :func:`hybridpot.uncertainty.select_structures` (largest force
sigma x distance to the labelled set in the model's invariant descriptor space), "random"
by :func:`hybridpot.uncertainty.random_selection`. Every round trains the same small
model with the same recipe, warm-started from the strategy's previous model, with the
LLPR uncertainty fitted on the training set and calibrated on the validation set. The
force RMSE on a held-out test set (all four kinds) gives the learning curves; the final
models' Spearman(|F error|, sigma_F) per atom and miscalibration areas on the test set
give the calibration numbers.

    python benchmarks/active_learning.py [--workdir /tmp/al-bench] [--rounds 6]
        [--per-round 4] [--epochs 10] [--output benchmarks/results/active_learning]

Writes ``<output>.json`` and ``<output>.png`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MODEL = {
    "cutoff": 4.5,
    "num_layers": 2,
    "hidden_irreps": "8x0e + 4x1o",
    "l_max": 1,
    "num_radial": 6,
    "radial_mlp": [16],
    "readout_mlp": [16],
    "sigma_q": 0.0,
    "coulomb_accuracy": 1e-3,
}

TRAINING = {
    "batch_size": 4,
    "dtype": "float32",
    "optim": {"lr": 1e-2, "ema_decay": 0.9},
    "schedule": {"kind": "cosine", "min_lr": 1e-4},
    "loss": {"energy": 1.0, "forces": 10.0, "charges": 1.0},
    "plots": False,
    "quiet": True,
}


def make_data(workdir: Path, seed: int, n_pool: int, n_valid: int, n_test: int) -> dict:
    """Write pool.xyz, validation.xyz, test.xyz (independent seeds) unless present."""
    from hybridpot.reference import MDSettings, SamplingSpec, generate_nacl_dataset, write_extxyz

    specs = (
        SamplingSpec("crystal", "crystal", 2, (300.0, 1000.0), 0.03, 0.03, weight=3.0),
        SamplingSpec("vacancy", "vacancy", 2, (300.0, 1000.0), 0.02, 0.02, weight=2.0),
        SamplingSpec("slab", "slab", 2, (300.0, 900.0), 0.02, weight=2.0),
        SamplingSpec("melt", "melt", 2, (1500.0, 2000.0), 0.03, weight=2.0),
    )
    md = MDSettings(equilibration_steps=20, stride=10, frames_per_run=4)
    paths = {}
    seeds = np.random.SeedSequence(seed).generate_state(3)
    for (name, count), file_seed in zip(
        (("pool", n_pool), ("validation", n_valid), ("test", n_test)), seeds, strict=True
    ):
        path = workdir / f"{name}.xyz"
        if not path.is_file():
            write_extxyz(generate_nacl_dataset(count, int(file_seed), specs=specs, md=md), path)
        paths[name] = path
    return paths


def train_round(labelled, paths, out: Path, epochs: int, seed: int, previous):
    import ase.io

    from hybridpot.model import load_model
    from hybridpot.train import config_from_dict, train

    out.mkdir(parents=True, exist_ok=True)
    ase.io.write(out / "train.xyz", labelled)
    config = config_from_dict(
        {
            **TRAINING,
            "epochs": epochs,
            "seed": seed,
            "uncertainty": True,
            "model": MODEL,
            "data": {"train": str(out / "train.xyz"), "valid": str(paths["validation"])},
            "output_dir": str(out / "training"),
        }
    )
    train(config, overwrite=True, init_model=previous)
    return load_model(out / "training" / "model.pt")


def test_errors(model, test_images):
    from hybridpot.train.evaluate import evaluate_structures, uncertainty_errors
    from hybridpot.uncertainty import calibration_metrics

    metrics, _, predictions = evaluate_structures(model, test_images)
    pairs = uncertainty_errors(test_images, predictions)
    calibration = {name: calibration_metrics(*pair) for name, pair in pairs.items()}
    # Per atom: |F_i error| (norm) against sigma_F,i.
    from scipy import stats

    norms, sigmas = [], []
    for atoms, pred in zip(test_images, predictions, strict=True):
        norms.append(np.linalg.norm(pred["forces"] - atoms.get_forces(), axis=1))
        sigmas.append(pred["forces_uncertainty"])
    calibration["forces"]["spearman_per_atom"] = float(
        stats.spearmanr(np.concatenate(norms), np.concatenate(sigmas)).statistic
    )
    by_type = {}
    for kind in sorted({a.info["config_type"] for a in test_images}):
        sub = [i for i, a in enumerate(test_images) if a.info["config_type"] == kind]
        err = np.concatenate(
            [(predictions[i]["forces"] - test_images[i].get_forces()).ravel() for i in sub]
        )
        by_type[kind] = 1000 * float(np.sqrt(np.mean(err**2)))
    return metrics, calibration, by_type


def run_strategy(name, paths, initial_idx, args):
    import ase.io

    from hybridpot.data.dataset import graphs_from_structures
    from hybridpot.uncertainty import random_selection, select_structures

    pool = ase.io.read(paths["pool"], ":")
    test = ase.io.read(paths["test"], ":")
    chosen = list(initial_idx)
    previous = None
    rows = []
    for r in range(args.rounds):
        start = time.perf_counter()
        labelled = [pool[i] for i in chosen]
        model = train_round(
            labelled, paths, Path(args.workdir) / name / f"round_{r}", args.epochs, r, previous
        )
        metrics, calibration, by_type = test_errors(model, test)
        row = {
            "round": r,
            "n_labels": len(chosen),
            "force_rmse": metrics["forces_rmse"],
            "energy_rmse": metrics["energy_rmse"],
            "force_rmse_by_type": by_type,
            "calibration": calibration,
            "picked_types": [pool[i].info["config_type"] for i in chosen],
        }
        rest = [i for i in range(len(pool)) if i not in chosen]
        if r + 1 < args.rounds:
            if name == "active":
                cutoff = float(model.cutoff)
                pick = select_structures(
                    model,
                    graphs_from_structures([pool[i] for i in rest], cutoff),
                    args.per_round,
                    exclude=graphs_from_structures(labelled, cutoff),
                )
                new = [rest[i] for i in pick.indices]
            else:
                new = [rest[i] for i in random_selection(len(rest), args.per_round, args.seed + r)]
            chosen += new
        row["time_s"] = time.perf_counter() - start
        rows.append(row)
        print(
            f"{name:6s} round {r}: {row['n_labels']:3d} labels, force RMSE "
            f"{row['force_rmse']:.1f} meV/Å, Spearman "
            f"{calibration['forces']['spearman_per_atom']:.2f}, area "
            f"{calibration['forces']['miscalibration_area']:.3f} ({row['time_s']:.0f} s)",
            flush=True,
        )
        previous = model
    return rows


def labels_to_reach(rows, target):
    """Fewest labels whose force RMSE is <= target (None if never)."""
    for row in rows:
        if row["force_rmse"] <= target:
            return row["n_labels"]
    return None


def plot(results, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, rows in results.items():
        ax.plot([r["n_labels"] for r in rows], [r["force_rmse"] for r in rows], "o-", label=name)
    ax.set_xlabel("labelled structures")
    ax.set_ylabel("test force RMSE (meV/Å)")
    ax.set_yscale("log")
    ax.set_title("Tosi-Fumi NaCl: active vs random")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/tmp/hybridpot-al-bench")
    parser.add_argument("--output", default=str(HERE / "results" / "active_learning"))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=4)
    parser.add_argument("--initial", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pool", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import ase.io
    import torch

    torch.set_num_threads(1)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = make_data(workdir, args.seed, args.pool, 16, 32)
    print(f"data: {time.perf_counter() - start:.0f} s", flush=True)
    pool = ase.io.read(paths["pool"], ":")
    crystals = [i for i, a in enumerate(pool) if a.info["config_type"] == "crystal"]
    initial = [
        int(i) for i in np.random.default_rng(args.seed).choice(crystals, args.initial, False)
    ]
    results = {name: run_strategy(name, paths, initial, args) for name in ("active", "random")}
    final_random = results["random"][-1]
    needed = labels_to_reach(results["active"], final_random["force_rmse"])
    summary = {
        "random_final_labels": final_random["n_labels"],
        "random_final_force_rmse": final_random["force_rmse"],
        "active_labels_to_reach_it": needed,
        "label_ratio": None if needed is None else needed / final_random["n_labels"],
    }
    out = {
        "args": vars(args),
        "model": MODEL,
        "training": TRAINING,
        "summary": summary,
        "results": results,
        "machine": "shared 2-core CPU, noisy",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{args.output}.json").write_text(json.dumps(out, indent=2))
    plot(results, f"{args.output}.png")
    print("\n| labels | active force RMSE (meV/Å) | random force RMSE (meV/Å) |")
    print("|---|---|---|")
    for a, r in zip(results["active"], results["random"], strict=True):
        print(f"| {a['n_labels']} | {a['force_rmse']:.1f} | {r['force_rmse']:.1f} |")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
