"""Active learning on Tosi-Fumi NaCl: `hybridpot active` from a YAML-style config.

1. Generates a few labelled 64-ion NaCl crystals (the initial set), a validation set of
   crystals, vacancy pairs, slabs and melts, and unlabelled MD starts: a crystal, a (100)
   slab and a melt (:mod:`hybridpot.reference`).
2. Runs the loop (:func:`hybridpot.train.run_active`, the same as ``hybridpot active
   config.yaml``): train (warm start, calibrated LLPR uncertainty) -> MD with the current
   model at the configured temperatures and strains, stopped early where the force
   uncertainty passes a threshold -> pick the most uncertain, diverse frames -> label them
   with the built-in Tosi-Fumi calculator -> retrain.
3. Prints the validation force RMSE and the largest candidate uncertainty per round and
   plots them against the number of labels (``active_learning.png``).

    python examples/active_learning.py [--quick] [--output DIR]

The loop is resumable: run the script again with the same ``--output`` after an
interruption and it continues from ``OUTPUT/active_learning/run/state.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from _common import DEFAULT_OUTPUT

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


def make_data(folder: Path, quick: bool) -> dict:
    import numpy as np

    from hybridpot.reference import MDSettings, SamplingSpec, generate_nacl_dataset, write_extxyz
    from hybridpot.reference.structures import build_structure

    md = MDSettings(equilibration_steps=10, stride=5, frames_per_run=4)
    crystal = SamplingSpec("crystal", "crystal", 2, (300.0, 900.0), 0.02, 0.02)
    kinds = (
        crystal,
        SamplingSpec("vacancy", "vacancy", 2, (300.0, 900.0), 0.02),
        SamplingSpec("slab", "slab", 2, (300.0, 900.0), 0.02),
        SamplingSpec("melt", "melt", 2, (1500.0, 2000.0), 0.02),
    )
    files = {}
    if not (folder / "initial.xyz").is_file():
        write_extxyz(generate_nacl_dataset(4, 1, specs=(crystal,), md=md), folder / "initial.xyz")
        n_valid = 4 if quick else 16
        write_extxyz(
            generate_nacl_dataset(n_valid, 2, specs=kinds, md=md), folder / "validation.xyz"
        )
        rng = np.random.default_rng(3)
        starts = [build_structure(spec, 600.0, rng) for spec in (kinds[0], kinds[2], kinds[3])]
        write_extxyz(starts, folder / "starts.xyz")
    for name in ("initial", "validation", "starts"):
        files[name] = str(folder / f"{name}.xyz")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, tiny budgets")
    parser.add_argument("--output", default=DEFAULT_OUTPUT, help="output folder")
    args = parser.parse_args()
    from hybridpot.train import active_config_from_dict, run_active

    start = time.perf_counter()
    folder = Path(args.output) / "active_learning"
    folder.mkdir(parents=True, exist_ok=True)
    files = make_data(folder, args.quick)
    config = {
        "initial": files["initial"],
        "validation": files["validation"],
        "training": {
            "epochs": 2 if args.quick else 12,
            "batch_size": 2,
            "dtype": "float32",
            "optim": {"lr": 0.01, "ema_decay": 0.9},
            "schedule": {"kind": "cosine", "min_lr": 1e-4},
            "loss": {"energy": 1.0, "forces": 10.0, "charges": 1.0},
            "plots": False,
            "model": MODEL,
        },
        "explore": {
            "structures": files["starts"],
            "temperatures": [800.0] if args.quick else [600.0, 1500.0],
            "strains": [0.0] if args.quick else [-0.02, 0.02],
            "steps": 10 if args.quick else 60,
            "stride": 5 if args.quick else 15,
            "max_force_uncertainty": 5.0,
        },
        "label": {
            "calculator": "hybridpot.reference:TosiFumiCalculator",
            "kwargs": {"accuracy": 1e-5},
        },
        "per_round": 2 if args.quick else 4,
        "max_rounds": 2 if args.quick else 5,
        "output_dir": str(folder / "run"),
    }
    # The same config as a file: `hybridpot active active.yaml` runs (or resumes) it.
    (folder / "active.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = run_active(active_config_from_dict(config))
    print(f"{'round':>5} {'labels':>6} {'force RMSE (meV/Å)':>19} {'max sigma_F (eV/Å)':>19}")
    for row in result.history:
        sigma = row.get("max_uncertainty")
        print(
            f"{row['round']:>5} {row['n_labels']:>6} {row['force_rmse']:>19.1f} "
            f"{'-' if sigma is None else f'{sigma:.3f}':>19}"
        )
    print(f"stopped: {result.reason}")
    print(f"labels used: {result.n_labels}")
    print(f"final model: {result.model_path}")
    plot(result.history, folder / "active_learning.png")
    (folder / "summary.json").write_text(json.dumps(result.history, indent=2))
    print(f"plot: {folder / 'active_learning.png'}")
    print(f"time: {time.perf_counter() - start:.0f} s")


def plot(history, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([r["n_labels"] for r in history], [r["force_rmse"] for r in history], "o-")
    ax.set_xlabel("labelled structures")
    ax.set_ylabel("validation force RMSE (meV/Å)")
    ax.set_title("hybridpot active: Tosi-Fumi NaCl")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
