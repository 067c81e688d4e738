"""Train with two processes (DistributedDataParallel) and check it equals one process.

1. Writes small labelled NaCl cells (extended XYZ).
2. Trains with ``hybridpot train config.yaml --devices 2`` (two CPU processes, gloo;
   ``batch_size`` is per process, so the global batch is 2 x 2 = 4).
3. Trains the same config in ONE process with ``batch_size`` 4 and compares: the epoch
   losses and the exported weights agree to round-off (float64), because the loss is
   normalised by global counts and the gradients are summed over the ranks
   (docs/distributed.md).

    python examples/train_ddp.py [--quick] [--output DIR]

On a machine with K GPUs: ``hybridpot train config.yaml device=cuda --devices K``.
Writes ``OUTPUT/train_ddp/``: ``cells.xyz``, ``config.yaml``, ``two_ranks/`` and
``one_rank/`` (each a complete training output folder).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import ase.io
import torch
import yaml
from _common import add_common_arguments

from hybridpot.train.logs import read_csv
from hybridpot.train.synthetic import toy_nacl_structures

CONFIG = {
    "dtype": "float64",
    "quiet": True,
    "plots": False,
    "data": {"val_fraction": 0.2},
    "loss": {"energy": 1.0, "forces": 10.0, "stress": 1.0, "charges": 1.0},
    "model": {"cutoff": 3.5, "num_layers": 1, "hidden_irreps": "16x0e + 8x1o", "l_max": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, model=False)
    args = parser.parse_args()
    out = Path(args.output) / "train_ddp"
    out.mkdir(parents=True, exist_ok=True)
    count, epochs = (20, 2) if args.quick else (80, 10)
    data = out / "cells.xyz"
    ase.io.write(data, toy_nacl_structures(count, seed=7), format="extxyz")
    config = out / "config.yaml"
    config.write_text(
        yaml.safe_dump({**CONFIG, "epochs": epochs, "data": {**CONFIG["data"], "train": str(data)}})
    )
    print(f"[1/3] {count} labelled cells in {data}; config {config}")

    two = [
        sys.executable,
        "-m",
        "hybridpot.cli",
        "train",
        str(config),
        "--devices",
        "2",
        "--overwrite",
        f"output_dir={out / 'two_ranks'}",
        "batch_size=2",
    ]
    print("[2/3] " + " ".join(["hybridpot", *two[3:]]))
    subprocess.run(two, check=True)
    one = [
        sys.executable,
        "-m",
        "hybridpot.cli",
        "train",
        str(config),
        "--overwrite",
        f"output_dir={out / 'one_rank'}",
        "batch_size=4",
    ]
    print("[3/3] " + " ".join(["hybridpot", *one[3:]]))
    subprocess.run(one, check=True)

    rows2, rows1 = read_csv(out / "two_ranks" / "log.csv"), read_csv(out / "one_rank" / "log.csv")
    print(
        f"{'epoch':>5} {'train loss, 2 ranks':>22} {'train loss, 1 rank':>22} "
        f"{'val loss, 2 ranks':>20} {'val loss, 1 rank':>20}"
    )
    for a, b in zip(rows2, rows1):
        print(
            f"{int(a['epoch']):>5} {float(a['train_loss']):>22.12g} "
            f"{float(b['train_loss']):>22.12g} {float(a['val_loss']):>20.12g} "
            f"{float(b['val_loss']):>20.12g}"
        )
    w2 = torch.load(out / "two_ranks" / "model.pt", weights_only=True)["state_dict"]
    w1 = torch.load(out / "one_rank" / "model.pt", weights_only=True)["state_dict"]
    worst = max(float((w2[k] - w1[k]).abs().max()) for k in w1 if w1[k].numel())
    print(f"largest weight difference, 2 ranks x 2 vs 1 rank x 4: {worst:.3g}")


if __name__ == "__main__":
    main()
