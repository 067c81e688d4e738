"""Train from a packed file read on demand by worker processes (data larger than memory).

1. Writes labelled NaCl cells as extended XYZ.
2. Packs them: ``hybridpot pack cells.xyz -o cells.hpk`` (reads structure by structure).
3. Trains from the packed file with two DataLoader worker processes
   (``data.train=cells.hpk data.num_workers=2``), and once more from the extended XYZ
   file, and prints both epoch logs: the same numbers, since the data, the split and the
   batch order are the same.

    python examples/large_dataset.py [--quick] [--output DIR]

For 200,000 structures and the memory this takes, see ``benchmarks/streaming.py`` and
docs/large-datasets.md. Writes ``OUTPUT/large_dataset/``: ``cells.xyz``, ``cells.hpk``,
``packed/`` and ``xyz/`` (training output folders).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import ase.io
from _common import add_common_arguments

from hybridpot.train import load_config, train
from hybridpot.train.synthetic import toy_nacl_structures

OVERRIDES = [
    "quiet=true",
    "plots=false",
    "dtype=float64",
    "batch_size=4",
    "model.cutoff=3.5",
    "model.num_layers=1",
    "model.hidden_irreps='8x0e + 8x1o'",
    "model.l_max=1",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, model=False)
    args = parser.parse_args()
    out = Path(args.output) / "large_dataset"
    out.mkdir(parents=True, exist_ok=True)
    count, epochs = (24, 2) if args.quick else (200, 5)
    xyz = out / "cells.xyz"
    ase.io.write(xyz, toy_nacl_structures(count, seed=5), format="extxyz")
    packed = out / "cells.hpk"
    command = [sys.executable, "-m", "hybridpot.cli", "pack", str(xyz), "-o", str(packed)]
    print("[1/3] " + " ".join(["hybridpot", *command[3:]]))
    subprocess.run(command, check=True)
    logs = {}
    for name, data, workers in (("packed", packed, 2), ("xyz", xyz, 0)):
        config = load_config(
            None,
            [
                f"data.train={data}",
                f"data.num_workers={workers}",
                f"output_dir={out / name}",
                f"epochs={epochs}",
                *OVERRIDES,
            ],
        )
        logs[name] = train(config, overwrite=True).history
        print(f"[{2 if name == 'packed' else 3}/3] trained from {data} ({workers} workers)")
    print(
        f"{'epoch':>5} {'train loss (packed)':>22} {'train loss (xyz)':>22} "
        f"{'val loss (packed)':>20} {'val loss (xyz)':>20}"
    )
    for a, b in zip(logs["packed"], logs["xyz"]):
        print(
            f"{a['epoch']:>5} {a['train_loss']:>22.12g} {b['train_loss']:>22.12g} "
            f"{a['val_loss']:>20.12g} {b['val_loss']:>20.12g}"
        )


if __name__ == "__main__":
    main()
