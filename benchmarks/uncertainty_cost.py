"""Cost of the LLPR uncertainty relative to a force evaluation.

The same model (the demo's network, float32, Coulomb on) with and without a fitted
uncertainty evaluates energy + forces of rock-salt NaCl supercells; the median wall time
of ``--repeats`` interleaved calls after ``--warmup`` gives the overhead of the uncertainty (the
node-feature output, the last-layer features and three (N, H) x (H, H) products).
Run under ``flock /tmp/hybridpot-timing.lock`` on a shared machine.

    python benchmarks/uncertainty_cost.py [--sizes 64 512] [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default=str(HERE / "results" / "uncertainty_cost.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ase.build import bulk

    from hybridpot.data.graph import graph_from_atoms
    from hybridpot.demo import DEMO_MODEL
    from hybridpot.model import build_model

    torch.manual_seed(0)
    plain = build_model({**DEMO_MODEL, "elements": ["Na", "Cl"]}).to(torch.float32).eval()
    with_uq = build_model({**DEMO_MODEL, "elements": ["Na", "Cl"]}).to(torch.float32).eval()
    with_uq.load_state_dict(plain.state_dict())
    head = with_uq.attach_uncertainty()
    # A valid (random positive-definite) state: the cost does not depend on the values.
    for name in ("energy_root", "forces_root", "charges_root"):
        buffer = getattr(head, name)
        buffer.copy_(torch.eye(buffer.shape[0]) + 0.01 * torch.randn_like(buffer))
    head.alpha2.fill_(1.0)
    rows = []
    for n in args.sizes:
        k = round((n / 8) ** (1 / 3))
        atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(k)
        atoms.rattle(0.05, seed=0)
        graph = graph_from_atoms(atoms, plain.cutoff, dtype=torch.float32)
        models = {"plain": plain, "uncertainty": with_uq}
        for model in models.values():
            for _ in range(args.warmup):
                model(graph, compute_stress=False)
        # Interleaved calls, so that load from other processes hits both alike; the
        # overhead is the median of the per-pair ratios.
        samples = {name: [] for name in models}
        for _ in range(args.repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(graph, compute_stress=False)
                samples[name].append(time.perf_counter() - start)
        times = {name: statistics.median(v) for name, v in samples.items()}
        ratios = [u / p for u, p in zip(samples["uncertainty"], samples["plain"], strict=True)]
        overhead = statistics.median(ratios) - 1
        rows.append(
            {"atoms": len(atoms), **{f"{k}_s": v for k, v in times.items()}, "overhead": overhead}
        )
        print(
            f"{len(atoms):5d} atoms: forces {times['plain'] * 1e3:.1f} ms, with uncertainty "
            f"{times['uncertainty'] * 1e3:.1f} ms, overhead {100 * overhead:+.1f} %"
        )
    Path(args.output).write_text(
        json.dumps(
            {
                "rows": rows,
                "threads": args.threads,
                "model": DEMO_MODEL,
                "machine": "shared 2-core CPU, noisy",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
