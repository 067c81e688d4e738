"""Streaming benchmark: training on a packed set of 200,000 structures in bounded memory.

1. Generates ``--structures`` small NaCl-like cells (the 8-ion conventional cell, random
   strain up to 3 %, 0.1 Å random displacements; random labels: energy, forces; the
   labels only need to be finite for a memory test) straight into a packed file
   (:class:`hybridpot.data.packed.PackWriter`), timing the write.
2. In a fresh process, builds a :class:`hybridpot.train.trainer.Trainer` on it (the
   statistics are computed from the memory-mapped arrays; neighbours on a sample) and
   takes ``--steps`` training steps with ``--workers`` DataLoader worker processes, then
   reports the peak resident memory (``resource.getrusage`` ``ru_maxrss``) of the
   training process and of its workers, and the model's parameter memory.

    python benchmarks/streaming.py [--structures 200000] [--steps 100] [--workers 2]
        [--batch-size 16] [--data /tmp/streaming-200k.hpk]
        [--output benchmarks/results/streaming.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def generate(path: Path, count: int, seed: int = 0) -> float:
    """Write ``count`` random labelled NaCl cells to ``path``; returns seconds taken."""
    from ase.build import bulk

    from hybridpot import keys
    from hybridpot.data.packed import PackWriter

    rng = np.random.default_rng(seed)
    base = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    start = time.perf_counter()
    with PackWriter(path) as writer:
        for _ in range(count):
            atoms = base.copy()
            eps = rng.uniform(-0.03, 0.03, (3, 3))
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
            atoms.positions += rng.normal(0.0, 0.1, atoms.positions.shape)
            labels = {
                keys.ENERGY: np.array([-27.0 + rng.normal(0.0, 0.1)]),
                keys.FORCES: rng.normal(0.0, 0.3, (len(atoms), 3)),
                keys.WEIGHT: np.ones(1),
            }
            writer.add(atoms, labels, 0.0)
    return time.perf_counter() - start


def train(path: Path, steps: int, workers: int, batch_size: int) -> dict:
    """Train ``steps`` steps on the packed file; peak memory and throughput."""
    import torch

    from hybridpot.train import load_config
    from hybridpot.train.steps import train_step
    from hybridpot.train.trainer import Trainer

    torch.set_num_threads(1)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as out:
        config = load_config(
            None,
            [
                f"data.train={path}",
                "data.val_fraction=0.01",
                f"data.num_workers={workers}",
                f"output_dir={out}",
                f"batch_size={batch_size}",
                "quiet=true",
                "plots=false",
                "model.cutoff=4.0",
            ],
        )
        begin = time.perf_counter()
        trainer = Trainer(config)
        setup_s = time.perf_counter() - begin
        rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        trainer.model.train()
        trainer.train_loader.set_epoch(0)
        begin, done, structures = None, 0, 0
        for item in trainer.train_loader:
            train_step(
                trainer.model,
                item.graph,
                trainer.loss,
                trainer.optimizer,
                clip_grad_norm=10.0,
                ema=trainer.ema,
            )
            done += 1
            if done == 5:  # after warm-up (workers started, first batches)
                begin = time.perf_counter()
            elif done > 5:
                structures += item.num_global
            if done >= steps:
                break
        elapsed = time.perf_counter() - begin
        import gc

        gc.collect()  # the finished loop's workers are joined, so their peak is counted
        n_params = sum(p.numel() * p.element_size() for p in trainer.model.parameters())
        n_train = len(trainer.data.train)
    return {
        "train_structures": n_train,
        "steps": steps,
        "batch_size": batch_size,
        "workers": workers,
        "setup_s": setup_s,
        "structures_per_s": structures / elapsed,
        "rss_start_mb": rss_start,
        "rss_after_setup_mb": rss_setup,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_rss_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "model_parameters_mb": n_params / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", default=None, help="packed file (made when missing)")
    parser.add_argument("--output", default=str(HERE / "results" / "streaming.json"))
    parser.add_argument("--train-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = Path(args.data or Path(tempfile.gettempdir()) / f"streaming-{args.structures}.hpk")
    if args.train_only:  # the child process: report as JSON on stdout
        print(json.dumps(train(data, args.steps, args.workers, args.batch_size)))
        return
    result = {"structures": args.structures, "machine": platform.platform()}
    if not data.is_file():
        result["generate_s"] = generate(data, args.structures)
    result["file_mb"] = data.stat().st_size / 2**20
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--train-only",
            "--data",
            str(data),
            "--steps",
            str(args.steps),
            "--workers",
            str(args.workers),
            "--batch-size",
            str(args.batch_size),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result.update(json.loads(child.stdout.strip().splitlines()[-1]))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        print(f"{key:24s} {value:.4g}" if isinstance(value, float) else f"{key:24s} {value}")


if __name__ == "__main__":
    main()
