"""Inference benchmark: time and peak memory of energy + forces + stress.

Rock-salt NaCl supercells (a = 5.64 Å, atoms displaced ~0.1 Å) with N = 512, 4,096 and
32,768 atoms, for the default hybridpot model and a model of MACE-like size (cutoff 5 Å,
2 layers, 64x0e + 64x1o, l_max 3), float32 and float64, with and without the Coulomb
term (``--coulomb induction``: the Coulomb term plus ``induction: true``); and MACE
itself (64x0e + 64x1o, l_max 3, correlation 3, 2 layers, float32) run in its own
virtual environment (mace-torch pins e3nn 0.4.4).

Every configuration runs in a fresh subprocess so its peak memory (max RSS on CPU,
max allocated on CUDA) is its own. Prints a Markdown table and writes JSON.

    python benchmarks/inference.py [--sizes 512 4096] [--device cpu] [--threads 2]
        [--mace-python /path/to/mace-venv/bin/python] [--output benchmarks/results/inference.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

MODELS = {
    "default": {},
    "mace-size": {
        "cutoff": 5.0,
        "num_layers": 2,
        "hidden_irreps": "64x0e + 64x1o",
        "l_max": 3,
    },
}


def nacl_supercell(n_atoms: int, seed: int = 0):
    """Rock-salt NaCl with ``n_atoms`` = 8 k^3 atoms, displaced by N(0, 0.1 Å)."""
    import ase.build
    import numpy as np

    k = round((n_atoms / 8) ** (1 / 3))
    if 8 * k**3 != n_atoms:
        raise ValueError(f"n_atoms must be 8 k^3 for a cubic rock-salt supercell, got {n_atoms}")
    atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64, cubic=True) * (k, k, k)
    atoms.positions += np.random.default_rng(seed).normal(scale=0.1, size=atoms.positions.shape)
    return atoms


def run_hybridpot(args) -> dict:
    """Worker: one configuration, in this process. Returns timings and memory."""
    import resource

    import torch

    import hybridpot
    from hybridpot.data import graph_from_atoms

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    config = {"elements": ["Na", "Cl"], "cutoff": 5.0, **MODELS[args.model]}
    config["coulomb"] = args.coulomb != "off"
    config["induction"] = args.coulomb == "induction"
    config["avg_num_neighbors"] = 26.0
    torch.manual_seed(0)
    model = hybridpot.build_model(config).to(device=device, dtype=dtype).eval()
    atoms = nacl_supercell(args.size)

    def call():
        t0 = time.perf_counter()
        graph = graph_from_atoms(atoms, model.cutoff, dtype=dtype).to(device)
        t1 = time.perf_counter()
        out = model(graph, compute_forces=True, compute_stress=True)
        out["forces"].sum().item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return t1 - t0, time.perf_counter() - t1

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    call()  # warm-up (tuning, allocator, lazy init); counted in the peak memory on CUDA
    times = [call() for _ in range(args.repeats)]
    neighbour = sorted(t[0] for t in times)[len(times) // 2]
    model_time = sorted(t[1] for t in times)[len(times) // 2]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB -> MiB
    return {
        "code": "hybridpot",
        "model": args.model,
        "coulomb": args.coulomb,
        "dtype": args.dtype,
        "n_atoms": args.size,
        "device": args.device,
        "threads": args.threads,
        "keep_malloc": "MALLOC_MMAP_THRESHOLD_" in os.environ,
        "parameters": sum(p.numel() for p in model.parameters()),
        "neighbour_list_s": neighbour,
        "model_s": model_time,
        "total_s": neighbour + model_time,
        "ms_per_atom": 1e3 * (neighbour + model_time) / args.size,
        "atom_steps_per_s": args.size / (neighbour + model_time),
        "peak_memory_mib": peak,
        "peak_memory_kib_per_atom": 1024 * peak / args.size,
    }


def malloc_env(args) -> dict:
    """Environment that keeps freed memory in glibc's heap (see --keep-malloc)."""
    if not args.keep_malloc:
        return {}
    big = str(16 * 2**30)
    return {"MALLOC_MMAP_THRESHOLD_": big, "MALLOC_TRIM_THRESHOLD_": big}


def run_mace(args, python: str) -> dict:
    """Run MACE in its own environment on the same structure (benchmarks/_mace_worker.py)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "structure.xyz"
        nacl_supercell(args.size).write(path)
        command = [
            python,
            str(HERE / "_mace_worker.py"),
            str(path),
            "--threads",
            str(args.threads),
            "--device",
            args.device,
            "--repeats",
            str(args.repeats),
        ]
        env = dict(os.environ, **malloc_env(args))
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=args.timeout, env=env
        )
    if result.returncode != 0:
        return {"code": "mace", "n_atoms": args.size, "error": result.stderr.strip()[-500:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        "| code | model | coulomb | dtype | N | ms/atom | model s | nl s | atom-steps/s "
        "| peak MiB | KiB/atom |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['code']} | | | | {r['n_atoms']} | error: {r['error'][:60]} |||||")
            continue
        lines.append(
            f"| {r['code']} | {r.get('model', 'mace')} | {r.get('coulomb', '-')} | "
            f"{r.get('dtype', 'float32')} | {r['n_atoms']} | {r['ms_per_atom']:.3f} | "
            f"{r['model_s']:.3f} | {r.get('neighbour_list_s', 0):.3f} | "
            f"{r['atom_steps_per_s']:.0f} | {r['peak_memory_mib']:.0f} | "
            f"{r['peak_memory_kib_per_atom']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 4096, 32768])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument(
        "--coulomb",
        nargs="+",
        default=["on", "off"],
        choices=["on", "off", "induction"],
        help="long-range term: on (Coulomb), off (short range only), induction (Coulomb + "
        "induction: true)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--mace-python", default=None, help="python of a venv with mace-torch")
    parser.add_argument("--mace-max-size", type=int, default=4096)
    parser.add_argument(
        "--keep-malloc",
        action="store_true",
        help="run every worker (MACE too) with glibc's MALLOC_MMAP_THRESHOLD_ and "
        "MALLOC_TRIM_THRESHOLD_ raised, so large tensors are not mmapped and page-faulted "
        "afresh on every call (measured 2.4x faster on CPU at 4,096-32,768 atoms)",
    )
    parser.add_argument("--output", default=str(HERE / "results" / "inference.json"))
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every configuration in this process (CUDA: peak memory is reset per "
        "configuration, so it stays per-configuration; saves the start-up of each worker)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--coulomb-mode", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.coulomb = args.coulomb_mode
        print(json.dumps(run_hybridpot(args)))
        return 0

    rows = []
    for size in args.sizes:
        for model in args.models:
            for dtype in args.dtypes:
                for coulomb in args.coulomb:
                    if args.in_process:
                        import copy

                        job = copy.copy(args)
                        job.size, job.model, job.dtype = size, model, dtype
                        job.coulomb = coulomb
                        try:
                            rows.append(run_hybridpot(job))
                        except Exception as error:  # e.g. out of memory: record and go on
                            rows.append(
                                {
                                    "code": "hybridpot",
                                    "n_atoms": size,
                                    "model": model,
                                    "error": f"{type(error).__name__}: {error}"[:500],
                                }
                            )
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
                        continue
                    command = [sys.executable, __file__, "--worker", "--size", str(size)]
                    command += ["--model", model, "--dtype", dtype, "--device", args.device]
                    command += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
                    command += ["--coulomb-mode", coulomb]
                    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), **malloc_env(args))
                    try:
                        done = subprocess.run(
                            command, capture_output=True, text=True, env=env, timeout=args.timeout
                        )
                        if done.returncode == 0:
                            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                        else:
                            rows.append(
                                {
                                    "code": "hybridpot",
                                    "n_atoms": size,
                                    "model": model,
                                    "error": done.stderr.strip()[-500:],
                                }
                            )
                    except subprocess.TimeoutExpired:
                        rows.append(
                            {
                                "code": "hybridpot",
                                "n_atoms": size,
                                "model": model,
                                "error": f"timeout after {args.timeout} s",
                            }
                        )
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
        if args.mace_python and size <= args.mace_max_size:
            args.size = size
            rows.append(run_mace(args, args.mace_python))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(table(rows))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
