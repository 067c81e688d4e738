"""Calibration of the LLPR uncertainty on a real DFT dataset (NaCl(aq), revPBE0-D3).

A short training of a small hybrid model on ``--n-train`` frames of
``../shared/data/nacl-water`` (seeded split: train / validation / test), with
``uncertainty: true`` (fitted on the training frames, calibrated on the validation
frames); then, on the held-out test frames, the Spearman correlation of the per-atom
force error norm and sigma_F, and the miscalibration areas of energy and force
components (:mod:`hybridpot.uncertainty.calibration`). Skips cleanly without the data.

    python benchmarks/uncertainty_real_data.py [--n-train 80] [--epochs 6]
        [--output benchmarks/results/uncertainty_nacl_water.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "nacl-water"

MODEL = {
    "cutoff": 5.0,
    "num_layers": 2,
    "hidden_irreps": "16x0e + 8x1o",
    "l_max": 1,
    "num_radial": 6,
    "radial_mlp": [16],
    "readout_mlp": [16],
    "sigma_q": 1.0,
    "coulomb_accuracy": 1e-3,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=80)
    parser.add_argument("--n-valid", type=int, default=20)
    parser.add_argument("--n-test", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workdir", default="/tmp/hybridpot-uq-real")
    parser.add_argument("--output", default=str(HERE / "results" / "uncertainty_nacl_water.json"))
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"no data folder {DATA}: skipped")
        return 0
    import ase.io
    from scipy import stats

    from hybridpot.train import config_from_dict, train
    from hybridpot.train.config import DataConfig
    from hybridpot.train.evaluate import evaluate_structures, uncertainty_errors
    from hybridpot.uncertainty import calibration_metrics, plot_calibration

    images = [a for f in sorted(DATA.glob("*.extxyz")) for a in ase.io.read(f, ":")]
    order = np.random.default_rng(0).permutation(len(images))
    n_tr, n_va, n_te = args.n_train, args.n_valid, args.n_test
    split = {
        "train": order[:n_tr],
        "valid": order[n_tr : n_tr + n_va],
        "test": order[n_tr + n_va : n_tr + n_va + n_te],
    }
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for name, idx in split.items():
        ase.io.write(work / f"{name}.xyz", [images[i] for i in idx])
    config = config_from_dict(
        {
            "epochs": args.epochs,
            "batch_size": 4,
            "dtype": "float32",
            "seed": 0,
            "optim": {"lr": 1e-2, "ema_decay": 0.9},
            "schedule": {"kind": "cosine", "min_lr": 1e-4},
            "loss": {"energy": 1.0, "forces": 10.0},
            "uncertainty": True,
            "plots": False,
            "quiet": True,
            "model": MODEL,
            "data": {
                "train": str(work / "train.xyz"),
                "valid": str(work / "valid.xyz"),
                "total_charge_key": "total_charge",
            },
            "output_dir": str(work / "run"),
        }
    )
    start = time.perf_counter()
    result = train(config, overwrite=True)
    train_time = time.perf_counter() - start
    test = ase.io.read(work / "test.xyz", ":")
    keys = DataConfig(total_charge_key="total_charge")
    metrics, _, predictions = evaluate_structures(result.model, test, keys)
    pairs = uncertainty_errors(test, predictions, keys)
    calibration = {name: calibration_metrics(*pair) for name, pair in pairs.items()}
    norms = np.concatenate(
        [
            np.linalg.norm(p["forces"] - a.get_forces(), axis=1)
            for a, p in zip(test, predictions, strict=True)
        ]
    )
    sigmas = np.concatenate([p["forces_uncertainty"] for p in predictions])
    calibration["forces"]["spearman_per_atom"] = float(stats.spearmanr(norms, sigmas).statistic)
    plot_calibration(pairs, Path(args.output).with_suffix(".png"))
    out = {
        "args": vars(args),
        "model": MODEL,
        "train_time_s": train_time,
        "test_metrics": metrics,
        "calibration": calibration,
        "machine": "shared 2-core CPU, noisy",
    }
    Path(args.output).write_text(json.dumps(out, indent=2))
    print(
        json.dumps(
            {
                "force_rmse": metrics["forces_rmse"],
                **{
                    f"{k}_{m}": round(v[m], 3)
                    for k, v in calibration.items()
                    for m in ("spearman", "miscalibration_area", "alpha")
                },
                "spearman_per_atom": round(calibration["forces"]["spearman_per_atom"], 3),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
