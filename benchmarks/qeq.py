"""Charge equilibration benchmark: CG iterations, Coulomb (PME) calls and time per solve.

Systems: rock-salt-like NaCl at a = 5.64 Å with every atom displaced by 0.3 Å RMS
(:func:`hybridpot.testing.rocksalt_supercell`), n x n x n supercells of the 8-atom cell.
Per-atom electronegativities chi = -/+2 eV/e (Na/Cl) plus Gaussian noise of 0.5 eV/e and
hardnesses J = 6 eV/e² plus uniform noise in [-1, 1] (NaCl-like random Qeq parameters),
Gaussian charges sigma_q = 1 Å, PME at the default accuracy (1e-4), float64.

For each size it reports, after one warm-up solve (which also builds the plan):

- ``iterations``: CG iterations of one solve at ``--tolerance`` (relative residual);
- ``pme_calls``: Coulomb evaluations of that solve (one per iteration + the start
  residual; each is one real-space + PME pass with its analytic backward, dE/dq);
- ``solve_s``: median wall time of a solve (plan reused, as in MD between list
  rebuilds), and ``per_call_s``, the median time of one Coulomb evaluation alone, so
  solve_s / per_call_s is the cost in units of one potential evaluation;
- ``us_per_atom``: solve_s / N.

Run under the project's timing lock (one timing job at a time on a shared machine):

    flock /tmp/hybridpot-timing.lock python benchmarks/qeq.py --sizes 5 8 10 13
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from hybridpot.electrostatics import Electrostatics, equilibrate_charges
from hybridpot.electrostatics.qeq import CoulombOperator
from hybridpot.fileio import atomic_write_text
from hybridpot.testing import rocksalt_supercell


def _system(n: int, seed: int):
    rng = np.random.default_rng(seed)
    atoms = rocksalt_supercell(n, rng, displacement=0.3)
    sodium = torch.tensor(atoms.numbers == 11)
    size = len(atoms)
    gen = torch.Generator().manual_seed(seed)
    chi = torch.where(sodium, -2.0, 2.0).double() + 0.5 * torch.randn(size, generator=gen).double()
    hardness = 6.0 + (2.0 * torch.rand(size, generator=gen).double() - 1.0)
    positions = torch.tensor(atoms.positions)
    cell = torch.tensor(atoms.cell.array)[None]
    return atoms, chi, hardness, positions, cell


def run(n: int, tolerance: float, repeats: int, seed: int = 0) -> dict:
    atoms, chi, hardness, positions, cell = _system(n, seed)
    size = len(atoms)
    pbc = torch.ones(1, 3, dtype=torch.bool)
    batch = torch.zeros(size, dtype=torch.int64)
    zero = torch.zeros(1, dtype=torch.float64)
    es = Electrostatics(sigma_q=1.0)
    start = time.perf_counter()
    plan = es.plan(positions, cell, pbc, batch)
    plan_s = time.perf_counter() - start

    def solve(stats=None):
        return equilibrate_charges(
            chi,
            hardness,
            positions,
            cell,
            pbc,
            batch,
            batch,
            zero,
            es,
            plan=plan,
            tolerance=tolerance,
            stats=stats,
        )

    solve()  # warm-up
    times, stats = [], {}
    for _ in range(repeats):
        stats = {}
        start = time.perf_counter()
        q = solve(stats)
        times.append(time.perf_counter() - start)
    operator = CoulombOperator(es, plan, pbc, batch, batch, 1)
    calls = []
    for _ in range(repeats):
        start = time.perf_counter()
        operator.potential(q, positions, cell)
        calls.append(time.perf_counter() - start)
    solve_s, per_call_s = statistics.median(times), statistics.median(calls)
    return {
        "atoms": size,
        "tolerance": tolerance,
        "iterations": stats["iterations"][0],
        "pme_calls": stats["evaluations"],
        "solve_s": solve_s,
        "per_call_s": per_call_s,
        "solve_over_call": solve_s / per_call_s,
        "us_per_atom": 1e6 * solve_s / size,
        "plan_s": plan_s,
        "charge_rms": float(q.square().mean().sqrt()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[5, 8, 10, 13],
        help="supercell repeats n (8 n³ atoms)",
    )
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/qeq_cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    print(
        "| atoms | CG iterations | PME calls | solve (s) | one call (s) | solve / call | µs/atom |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        row = run(n, args.tolerance, args.repeats)
        rows.append(row)
        print(
            f"| {row['atoms']} | {row['iterations']} | {row['pme_calls']} | "
            f"{row['solve_s']:.3f} | {row['per_call_s']:.4f} | {row['solve_over_call']:.1f} | "
            f"{row['us_per_atom']:.1f} |",
            flush=True,
        )
        result = {
            "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads "
            "(shared 2-core machine, noisy)",
            "torch": torch.__version__,
            "rows": rows,
        }
        # Written after every size, so a run cut short keeps what it measured.
        atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
