"""Training benchmark: structures per second of training steps (energy + force loss).

Rock-salt NaCl supercells of 64 and 512 atoms (a = 5.64 Å, random strain and ~0.1 Å
displacements) labelled by the Tosi-Fumi reference model (:mod:`hybridpot.reference`;
when it is unavailable, by the Lennard-Jones toy labels of
:mod:`hybridpot.train.synthetic`). For each size, the default model in float32 with the
Coulomb term (hybrid) and without it (short-range only) takes ``--steps`` timed
training steps (:func:`hybridpot.train.steps.train_step`: forward with forces, loss,
backward through the forces, clipping, AdamW, EMA) after ``--warmup`` untimed ones.
Prints a Markdown table and writes JSON (default ``benchmarks/results/training.json``).

    python benchmarks/training.py [--sizes 64 512] [--batch-size 4] [--steps 5]
        [--threads 2] [--device cpu] [--output benchmarks/results/training.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def nacl_structures(n_atoms: int, count: int, seed: int = 0):
    """``count`` labelled rock-salt supercells of ``n_atoms`` = 8 k^3 atoms and the
    name of the labelling model."""
    from hybridpot.train.synthetic import toy_nacl_structures

    k = round((n_atoms / 8) ** (1 / 3))
    if 8 * k**3 != n_atoms:
        raise ValueError(f"n_atoms must be 8 k^3 for a cubic rock-salt supercell, got {n_atoms}")
    images = toy_nacl_structures(count, repeat=(k, k, k), cubic=True, seed=seed)
    try:
        from hybridpot.reference import TosiFumiCalculator
    except ImportError:
        return images, "lennard-jones toy labels (hybridpot.reference unavailable)"
    from ase.calculators.singlepoint import SinglePointCalculator

    for atoms in images:
        atoms.calc = TosiFumiCalculator(accuracy=1e-4)
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **results)
    return images, "tosi-fumi"


def bench(n_atoms: int, coulomb: bool, args) -> dict:
    """Time training steps of one configuration; returns the numbers."""
    import hybridpot
    from hybridpot.data import batch_graphs
    from hybridpot.data.dataset import graphs_from_structures
    from hybridpot.data.statistics import dataset_statistics
    from hybridpot.train.config import LossConfig
    from hybridpot.train.ema import ExponentialMovingAverage
    from hybridpot.train.loss import Loss
    from hybridpot.train.steps import train_step

    device = torch.device(args.device)
    images, labels = nacl_structures(n_atoms, args.batch_size, seed=n_atoms)
    cutoff = args.cutoff
    graphs = graphs_from_structures(images, cutoff, dtype=torch.float32)
    config = {"elements": ["Na", "Cl"], "cutoff": cutoff, "coulomb": coulomb}
    config.update(dataset_statistics(graphs, ["Na", "Cl"]))
    torch.manual_seed(0)
    model = hybridpot.build_model(config).to(device=device, dtype=torch.float32)
    batch = batch_graphs(graphs).to(device)
    loss_fn = Loss(LossConfig(energy=1.0, forces=10.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ema = ExponentialMovingAverage(model, 0.99)

    def step():
        loss, _ = train_step(model, batch, loss_fn, optimizer, clip_grad_norm=10.0, ema=ema)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return float(loss)

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    per_step = float(np.median(times))
    return {
        "n_atoms": n_atoms,
        "model": "hybrid" if coulomb else "short-range",
        "batch_size": args.batch_size,
        "labels": labels,
        "median_step_s": per_step,
        "structures_per_s": args.batch_size / per_step,
        "atoms_per_s": args.batch_size * n_atoms / per_step,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--batch-size", type=int, default=4, help="structures per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--cutoff", type=float, default=5.0, help="model cutoff (Å)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", default=str(HERE / "results" / "training.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = [bench(n, coulomb, args) for n in args.sizes for coulomb in (True, False)]
    print(
        f"training steps, float32, batch {args.batch_size}, device {args.device}, "
        f"{args.threads} threads; labels: {rows[0]['labels']}"
    )
    print()
    print("| atoms | model | step (s) | structures/s | atoms/s |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n_atoms']} | {r['model']} | {r['median_step_s']:.3f} | "
            f"{r['structures_per_s']:.2f} | {r['atoms_per_s']:.0f} |"
        )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "dtype": "float32",
        "loss": "energy per atom (weight 1) + forces (weight 10), MSE",
    }
    output.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
