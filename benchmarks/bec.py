"""Born effective charges on SPICE dipeptides: latent charges alone vs training on BEC.

The hybrid model's charges are latent (no charge labels); its Born effective charges
Z*_i = dM/dr_i come by autograd. In ``../shared/data/spice-dipeptides`` only the
validation file carries DFT ``bec`` arrays, so the protocol is: the training set is
``--train-size`` molecules of the training file (energy, forces) plus ``--bec-train``
molecules of the validation file (energy, forces and BEC); the other validation molecules
are held out. The same network is trained twice on that set with the same budget and seed
— once on energy + forces (the BEC labels unused), once with the BEC loss added — and the
BEC, energy and force errors are reported on the held-out molecules. Table on stdout,
JSON in ``--output`` (written atomically).

    python benchmarks/bec.py [--epochs 8] [--train-size 200] [--bec-train 35] [--quick]
        [--data-dir ../shared/data] [--output benchmarks/results/bec.json]

``--quick`` is a smoke run (a few molecules, one epoch); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hybridpot.fileio import atomic_write_text  # noqa: E402
from hybridpot.model import load_model  # noqa: E402
from hybridpot.train import Trainer, load_config  # noqa: E402
from hybridpot.train.config import DataConfig  # noqa: E402
from hybridpot.train.evaluate import evaluate_structures  # noqa: E402

DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
FOLDER = "spice-dipeptides"

NETWORK = [
    "model.cutoff=5.0",
    "model.num_layers=2",
    "model.hidden_irreps='16x0e + 8x1o'",
    "model.l_max=1",
    "model.num_radial=6",
    "model.radial_mlp=[32]",
    "model.sigma_q=2.0",
]


def run(name: str, train: Path, valid: Path, workdir: Path, args, extra: list[str]) -> dict:
    config = load_config(
        None,
        [
            f"data.train={train}",
            f"data.valid={valid}",
            "data.forces_key=force",
            f"output_dir={workdir / name}",
            f"epochs={args.epochs}",
            "batch_size=8",
            "optim.lr=0.005",
            "loss.energy=1",
            "loss.forces=10",
            "quiet=true",
            "plots=false",
            f"seed={args.seed}",
            *NETWORK,
            *extra,
        ],
    )
    start = time.perf_counter()
    Trainer(config).fit()
    seconds = time.perf_counter() - start
    model = load_model(workdir / name / "model.pt")
    images = ase.io.read(valid, ":")
    metrics, counts, _ = evaluate_structures(
        model, images, DataConfig(forces_key="force"), batch_size=8
    )
    return {
        "model": name,
        "loss": extra,
        "train_seconds": seconds,
        "val_bec_mae_e": metrics["bec_mae"] / 1000.0,
        "val_bec_rmse_e": metrics["bec_rmse"] / 1000.0,
        "val_energy_rmse_mev_atom": metrics["energy_rmse"],
        "val_forces_rmse_mev_a": metrics["forces_rmse"],
        "val_structures": len(images),
        "bec_values": counts["bec"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=200)
    parser.add_argument("--bec-train", type=int, default=35)
    parser.add_argument("--bec-weight", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bec.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = args.data_dir / FOLDER
    if not folder.is_dir():
        print(f"{folder} not found: nothing to run")
        return 0
    if args.quick:
        args.epochs, args.train_size, args.bec_train = 1, 6, 3
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        train = workdir / "train.xyz"
        valid = workdir / "valid.xyz"
        rng = np.random.default_rng(args.seed)
        images = ase.io.read(folder / "spice-dipep-dipolar_train.xyz", ":")
        picked = sorted(rng.choice(len(images), min(args.train_size, len(images)), replace=False))
        labelled = ase.io.read(folder / "spice-dipep-dipolar_val.xyz", ":")
        order = rng.permutation(len(labelled))
        bec_train = [labelled[i] for i in sorted(order[: args.bec_train])]
        held_out = [labelled[i] for i in sorted(order[args.bec_train :])]
        if args.quick:
            held_out = held_out[:4]
        ase.io.write(train, [images[i] for i in picked] + bec_train, format="extxyz")
        ase.io.write(valid, held_out, format="extxyz")
        rows = [
            run("latent charges", train, valid, workdir, args, []),
            run("with BEC loss", train, valid, workdir, args, [f"loss.bec={args.bec_weight}"]),
        ]
    header = (
        f"{'model':<16} {'BEC MAE (e)':>12} {'BEC RMSE (e)':>13} {'E RMSE (meV/at)':>16} "
        f"{'F RMSE (meV/Å)':>15} {'train (s)':>10}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['model']:<16} {r['val_bec_mae_e']:>12.4f} {r['val_bec_rmse_e']:>13.4f} "
            f"{r['val_energy_rmse_mev_atom']:>16.2f} {r['val_forces_rmse_mev_a']:>15.1f} "
            f"{r['train_seconds']:>10.0f}"
        )
    result = {
        "benchmark": "bec",
        "machine": platform.platform(),
        "threads": args.threads,
        "epochs": args.epochs,
        "train_size": args.train_size,
        "bec_train": args.bec_train,
        "quick": args.quick,
        "network": NETWORK,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
