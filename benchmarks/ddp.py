"""Multi-process training throughput: structures per second with K ranks against one.

Runs the trainer under ``torchrun`` with K = 1, 2, ... ranks (``--ranks``) on the same
generated data (64-ion NaCl cells, :func:`hybridpot.train.synthetic.toy_nacl_structures`)
with the same per-rank batch, and times the optimiser steps of rank 0 (after
``--warmup`` steps): structures per second = global structures / time. The scaling
efficiency is (structures/s with K ranks) / (K x structures/s with one).

On CPU (``--device cpu``, gloo) the ranks share the machine's cores and memory
bandwidth, so the numbers say little about GPUs; each rank gets
``--threads`` threads.

    python benchmarks/ddp.py [--ranks 1 2] [--device cpu] [--steps 12] [--batch-size 2]
        [--output benchmarks/results/ddp_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(data: str, out: str, steps: int, warmup: int, batch: int, device: str, result: str):
    """Under torchrun: train and write rank 0's timing to ``result``."""
    from hybridpot.train import load_config
    from hybridpot.train.distributed import shutdown
    from hybridpot.train.trainer import Trainer

    config = load_config(
        None,
        [
            f"data.train={data}",
            f"output_dir={out}",
            f"batch_size={batch}",
            f"device={device}",
            "data.val_fraction=0.05",
            "epochs=1000",
            "quiet=true",
            "plots=false",
            "model.cutoff=4.0",
        ],
    )
    trainer = Trainer(config)
    times: list[float] = []
    trainer.model.train()
    trainer.train_loader.set_epoch(0)
    from hybridpot.train.steps import train_step

    structures = 0
    for item in trainer.train_loader:
        train_step(
            trainer.model,
            item.graph,
            trainer.loss,
            trainer.optimizer,
            clip_grad_norm=10.0,
            ema=trainer.ema,
            context=trainer.dist,
            forward=trainer.forward,
        )
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        times.append(time.perf_counter())
        if len(times) > warmup:
            structures += item.num_global
        if len(times) >= warmup + steps:
            break
    if trainer.dist.is_main:
        elapsed = times[-1] - times[warmup - 1]
        Path(result).write_text(
            json.dumps(
                {
                    "ranks": trainer.dist.world_size,
                    "structures_per_s": structures / elapsed,
                    "steps": len(times) - warmup,
                }
            )
        )
    shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(HERE / "results" / "ddp_cpu.json"))
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        data, out, device, result = args.worker
        worker(data, out, args.steps, args.warmup, args.batch_size, device, result)
        return
    import ase.io

    from hybridpot.train.synthetic import toy_nacl_structures

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cells.xyz"
        count = max(args.ranks) * args.batch_size * (args.steps + args.warmup + 1) * 2
        ase.io.write(data, toy_nacl_structures(count, repeat=(2, 2, 2), cubic=True), "extxyz")
        for k in args.ranks:
            result = Path(tmp) / f"result-{k}.json"
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={k}",
                __file__,
                "--steps",
                str(args.steps),
                "--warmup",
                str(args.warmup),
                "--batch-size",
                str(args.batch_size),
                "--worker",
                str(data),
                str(Path(tmp) / f"run-{k}"),
                args.device,
                str(result),
            ]
            subprocess.run(command, check=True, env=env)
            rows.append(json.loads(result.read_text()))
    single = next((r["structures_per_s"] for r in rows if r["ranks"] == 1), None)
    for row in rows:
        if single:
            row["efficiency"] = row["structures_per_s"] / (row["ranks"] * single)
    report = {
        "device": args.device,
        "batch_size_per_rank": args.batch_size,
        "threads_per_rank": args.threads,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "rows": rows,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print("| ranks | structures/s | efficiency |\n|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['ranks']} | {row['structures_per_s']:.2f} | {row.get('efficiency', 1):.2f} |"
        )


if __name__ == "__main__":
    main()
