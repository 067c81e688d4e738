"""Operator calls per training step (CPU, torch.profiler): does the step batch?

    python benchmarks/op_count.py [--output benchmarks/results/op_count.json]

A training step whose hot path loops over the structures of a batch in Python issues
more operator calls (and on a GPU more kernel launches and host syncs) for every
structure; a batched one issues about the same number for 1 and for 8 structures. For
the default model with and without Coulomb (64-atom rattled NaCl cells, energy + 10 x
force loss, AdamW), it counts the aten calls of one step at B = 1 and B = 8 and prints a
table; the goal is count(8) / count(1) <= 1.25. Counts are deterministic: no timing, so
it can run beside other work. JSON is written atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from torch.profiler import ProfilerActivity, profile

import hybridpot
from hybridpot.data import batch_graphs
from hybridpot.data.dataset import graphs_from_structures
from hybridpot.train.config import LossConfig
from hybridpot.train.loss import Loss
from hybridpot.train.steps import train_step


def labelled_cells(count: int, seed: int = 0) -> list:
    """``count`` strained, rattled 64-atom NaCl cells with random labels."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (2, 2, 2)
        atoms.set_cell(atoms.cell.array * (1 + 0.02 * rng.normal()), scale_atoms=True)
        atoms.rattle(0.1, seed=k)
        atoms.calc = SinglePointCalculator(
            atoms, energy=float(rng.normal()), forces=rng.normal(size=(64, 3)) * 0.1
        )
        out.append(atoms)
    return out


def ops_per_step(num_structures: int, coulomb: bool) -> int:
    """aten calls of one training step on a batch of ``num_structures`` cells."""
    graphs = graphs_from_structures(labelled_cells(num_structures), 5.0, dtype=torch.float32)
    torch.manual_seed(0)
    config = {"elements": ["Na", "Cl"], "cutoff": 5.0, "coulomb": coulomb}
    model = hybridpot.build_model(config).float()
    batch = batch_graphs(graphs)
    loss_fn = Loss(LossConfig(energy=1.0, forces=10.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):  # warm-up: plan built and cached, optimiser state allocated
        train_step(model, batch, loss_fn, optimizer, clip_grad_norm=10.0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, batch, loss_fn, optimizer, clip_grad_norm=10.0)
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/op_count.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for coulomb in (True, False):
        one, eight = ops_per_step(1, coulomb), ops_per_step(8, coulomb)
        rows.append(
            {
                "model": "hybrid" if coulomb else "short-range",
                "B=1": one,
                "B=8": eight,
                "ratio": eight / one,
            }
        )
    print(f"{'model':12} {'B=1':>8} {'B=8':>8} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:12} {r['B=1']:8d} {r['B=8']:8d} {r['ratio']:6.2f}")
    tmp = args.output + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(tmp, "w") as f:
        json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)
    os.replace(tmp, args.output)
    return 0 if all(r["ratio"] <= 1.25 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
