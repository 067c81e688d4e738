"""The one-model LLPR uncertainty against a deep ensemble, on the same data.

Trains ``--members`` models (seeds 0, 1, ...) with the recipe of
``benchmarks/active_learning.py`` on one labelled file (by default the last active-learning
round's training set of that benchmark), calibrates the ensemble spread on the validation
file, fits and calibrates the LLPR on member 0, and reports on the test file for both:
Spearman(|F_i error|, sigma_F,i) per atom, Spearman and miscalibration area per force
component and per structure energy.

    python benchmarks/ensemble_vs_llpr.py [--train FILE] [--members 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def report(model, test):
    from scipy import stats

    from hybridpot.train.evaluate import evaluate_structures, uncertainty_errors
    from hybridpot.uncertainty import calibration_metrics

    metrics, _, predictions = evaluate_structures(model, test)
    pairs = uncertainty_errors(test, predictions)
    out = {name: calibration_metrics(*pair) for name, pair in pairs.items()}
    norms = np.concatenate(
        [np.linalg.norm(p["forces"] - a.get_forces(), axis=1) for a, p in zip(test, predictions)]
    )
    sigmas = np.concatenate([p["forces_uncertainty"] for p in predictions])
    out["forces"]["spearman_per_atom"] = float(stats.spearmanr(norms, sigmas).statistic)
    out["force_rmse"] = metrics["forces_rmse"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    work = Path("/tmp/hybridpot-al-bench")
    parser.add_argument("--train", default=str(work / "active" / "round_5" / "train.xyz"))
    parser.add_argument("--valid", default=str(work / "validation.xyz"))
    parser.add_argument("--test", default=str(work / "test.xyz"))
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workdir", default="/tmp/hybridpot-ensemble-bench")
    parser.add_argument("--output", default=str(HERE / "results" / "ensemble_vs_llpr.json"))
    args = parser.parse_args()
    import ase.io
    import torch
    from active_learning import MODEL, TRAINING

    from hybridpot.data.dataset import graphs_from_structures
    from hybridpot.train import config_from_dict
    from hybridpot.uncertainty import fit_uncertainty, load_ensemble, train_ensemble

    torch.set_num_threads(1)
    config = config_from_dict(
        {
            **TRAINING,
            "epochs": args.epochs,
            "model": MODEL,
            "data": {"train": args.train, "valid": args.valid},
            "output_dir": args.workdir,
        }
    )
    ensemble = load_ensemble(train_ensemble(config, args.members))
    test = ase.io.read(args.test, ":")
    member = ensemble.members[0]
    cutoff = member.cutoff
    fit_uncertainty(
        member,
        graphs_from_structures(ase.io.read(args.train, ":"), cutoff),
        graphs_from_structures(ase.io.read(args.valid, ":"), cutoff),
    )
    result = {"llpr (member 0)": report(member, test), "ensemble": report(ensemble, test)}
    result["args"] = vars(args)
    result["machine"] = "shared 2-core CPU, noisy"
    Path(args.output).write_text(json.dumps(result, indent=2))
    for name in ("llpr (member 0)", "ensemble"):
        r = result[name]
        print(
            f"{name:16s} force RMSE {r['force_rmse']:.1f} meV/Å | Spearman per atom "
            f"{r['forces']['spearman_per_atom']:.2f} | force area "
            f"{r['forces']['miscalibration_area']:.3f} | energy Spearman "
            f"{r['energy']['spearman']:.2f} area {r['energy']['miscalibration_area']:.3f}"
        )


if __name__ == "__main__":
    main()
