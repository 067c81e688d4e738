"""GPU benchmark (one run, a few minutes): device checks, inference and training speed.

    python benchmarks/gpu.py [--output benchmarks/results/gpu.json] [--sizes 4096 32768 ...]

On the device (CUDA) it prints a table and writes JSON (atomically) with:

- checks: neighbour lists built on the GPU equal the host lists (bulk, slab, molecule);
  the hybrid model on the GPU equals the CPU (float64); host syncs in a forward +
  backward with a prepared plan (``torch.cuda.set_sync_debug_mode``, counted);
- inference E+F+S (float32, MACE-size model, rock-salt NaCl with 0.1 Å displacements):
  the hybrid and its short-range twin at each size: time of a call with the plan
  prepared (MD with a reused list; the yardstick's protocol), of a call that also
  builds the graph and the plan on the device (MD without a skin), peak memory;
- training steps (AdamW, E + 10 F loss, batch 4 x 64 and 4 x 512 atoms): with the plan
  cached on the batch and with it rebuilt every step (a loader that makes new batches).

MACE runs in its own environment through ``../shared/tools/gpu_compare.py``; the docs
page puts both side by side. Runs on the CPU too (small sizes), for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch

MACE_SIZE = {
    "cutoff": 5.0,
    "num_layers": 2,
    "hidden_irreps": "64x0e + 64x1o",
    "l_max": 3,
    "avg_num_neighbors": 26.0,
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn, device, n=5, warm=2):
    """Median wall time (s) of ``fn`` over ``n`` calls after ``warm`` calls."""
    for _ in range(warm):
        fn()
    sync(device)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def nacl(n_atoms, seed=0, strain=0.0, disp=0.1):
    from ase.build import bulk

    k = round((n_atoms / 8) ** (1 / 3))
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((k,) * 3)
    rng = np.random.default_rng(seed)
    if strain:
        atoms.set_cell(
            atoms.cell.array @ (np.eye(3) + strain * rng.normal(size=(3, 3))), scale_atoms=True
        )
    atoms.positions += rng.normal(scale=disp / math.sqrt(3), size=atoms.positions.shape)
    return atoms


def check_lists(device):
    """Device lists equal host lists (bulk, slab, molecule, small cell)."""
    from ase.build import molecule

    from hybridpot.data.neighbors import neighbor_pairs

    slab = nacl(512)
    slab.center(vacuum=8.0, axis=2)
    slab.pbc = (True, True, False)
    small = nacl(8)
    cases = {
        "bulk": (nacl(4096), 5.0),
        "slab": (slab, 7.0),
        "molecule": (molecule("C6H6"), 4.0),
        "small-cell": (small, 9.0),
    }
    out = {}
    for name, (atoms, cutoff) in cases.items():
        lists = []
        for dev in (torch.device("cpu"), device):
            pos = torch.tensor(atoms.positions, device=dev)
            cell = torch.tensor(atoms.cell.array, device=dev)
            lists.append([x.cpu() for x in neighbor_pairs(pos, cell, list(atoms.pbc), cutoff)])
        out[name] = all(torch.equal(a, b) for a, b in zip(*lists)) and lists[0][0].numel() > 0
    return out


def check_model_matches_cpu(device):
    """Hybrid model on the device equals the CPU, float64, bulk + slab + molecule batch."""
    from ase.build import molecule

    import hybridpot
    from hybridpot.data import batch_graphs, graph_from_atoms

    torch.manual_seed(0)
    model = hybridpot.build_model({"elements": ["Na", "Cl", "C", "H"], "cutoff": 4.0}).double()
    slab = nacl(64, seed=1)
    slab.center(vacuum=6.0, axis=2)
    slab.pbc = (True, True, False)
    mol = molecule("C6H6")
    structures = [nacl(64, seed=2, strain=0.02), slab, mol]
    results = []
    for dev in (torch.device("cpu"), device):
        m = model.to(dev)
        g = batch_graphs([graph_from_atoms(a, 4.0, dtype=torch.float64) for a in structures])
        out = m(g.to(dev), compute_forces=True, compute_stress=True)
        results.append({k: out[k].detach().cpu() for k in ("energy", "forces", "stress")})
    return {
        k: float((results[0][k] - results[1][k]).abs().max() / results[0][k].abs().max())
        for k in results[0]
    }


def count_syncs(device):
    """Host syncs in one forward + backward of the hybrid model with a prepared plan."""
    import hybridpot
    from hybridpot.data import graph_from_atoms

    if device.type != "cuda":
        return None
    torch.manual_seed(0)
    model = hybridpot.build_model({"elements": ["Na", "Cl"], **MACE_SIZE}).to(device).float()
    g = graph_from_atoms(nacl(4096), 5.0, dtype=torch.float32, device=device)
    g.coulomb_plan(model.electrostatics)
    model(g)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            model(g, compute_forces=True, compute_stress=True)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    messages = [str(w.message).splitlines()[0][:160] for w in caught]
    return {"count": len(messages), "first": messages[:5]}


def _time_inference(model, atoms, device, chunk):
    """One size: times (prepared, fresh graph + plan, skin lists) and peak memory."""
    from hybridpot.data import graph_from_atoms
    from hybridpot.data.verlet import VerletGraphs

    model.set_edge_chunk(chunk)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    def build():
        return graph_from_atoms(atoms, 5.0, dtype=torch.float32, device=device)

    def forces(graph):
        return model(graph, compute_forces=True, compute_stress=True)["forces"].sum()

    t_graph = timeit(build, device, n=3, warm=1)
    graph = build()
    t0 = time.perf_counter()
    forces(graph).item()
    t_first = time.perf_counter() - t0
    t = timeit(lambda graph=graph: forces(graph), device, n=5, warm=1)
    graph = None  # free it before the next measurement
    t_fresh = timeit(lambda: forces(build()), device, n=3, warm=1)
    # MD with a 1 Å skin: lists reused, each call keeps the pairs inside the cutoffs.
    verlet = VerletGraphs(5.0, skin=1.0, dtype=torch.float32, device=device)
    rng = np.random.default_rng(0)
    moved = atoms.copy()

    def md_call():
        moved.positions += rng.normal(scale=0.005, size=moved.positions.shape)
        return forces(verlet(moved, model.electrostatics))

    t_skin = timeit(md_call, device, n=3, warm=1)
    mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return dict(
        t_s=t,
        t_with_graph_and_plan_s=t_fresh,
        t_md_skin_s=t_skin,
        first_call_s=t_first,
        graph_s=t_graph,
        atom_steps_per_s=len(atoms) / t,
        peak_mib=mem,
        kib_per_atom=mem * 1024 / len(atoms) if mem else None,
        edge_chunk=chunk,
        list_builds=verlet.builds,
    )


def inference(sizes, device, emit, chunk_from, chunk):
    import hybridpot

    for coulomb in (True, False):
        torch.manual_seed(0)
        model = hybridpot.build_model({"elements": ["Na", "Cl"], **MACE_SIZE, "coulomb": coulomb})
        model = model.to(device=device, dtype=torch.float32).eval()
        name = "hybrid" if coulomb else "short-range"
        for n in sizes:
            atoms = nacl(n)
            use = chunk if n >= chunk_from else None
            try:
                emit(
                    dict(
                        kind="infer",
                        code=name,
                        N=len(atoms),
                        **_time_inference(model, atoms, device, use),
                    )
                )
            except torch.OutOfMemoryError:
                emit(dict(kind="infer", code=name, N=len(atoms), edge_chunk=use, error="OOM"))
            if device.type == "cuda":
                torch.cuda.empty_cache()


def training(device, emit):
    from ase.calculators.singlepoint import SinglePointCalculator

    import hybridpot
    from hybridpot.data import batch_graphs
    from hybridpot.data.dataset import graphs_from_structures
    from hybridpot.train.config import LossConfig
    from hybridpot.train.loss import Loss
    from hybridpot.train.steps import train_step

    for coulomb in (True, False):
        for n in (64, 512):
            rng = np.random.default_rng(n)
            images = []
            for c in range(4):
                atoms = nacl(n, seed=n + c, strain=0.01)
                atoms.calc = SinglePointCalculator(
                    atoms,
                    energy=float(rng.normal()) - 3.0 * len(atoms),
                    forces=rng.normal(scale=0.3, size=(len(atoms), 3)),
                )
                images.append(atoms)
            graphs = graphs_from_structures(images, 5.0, dtype=torch.float32)
            torch.manual_seed(0)
            config = {"elements": ["Na", "Cl"], **MACE_SIZE, "coulomb": coulomb}
            model = hybridpot.build_model(config).to(device=device, dtype=torch.float32)
            batch = batch_graphs(graphs).to(device)
            loss_fn = Loss(LossConfig(energy=1.0, forces=10.0))
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

            def step(model=model, batch=batch, loss_fn=loss_fn, opt=opt, fresh=False):
                if fresh:  # a loader that makes a new batch every step
                    batch._cache.clear()
                return float(train_step(model, batch, loss_fn, opt, clip_grad_norm=10.0)[0])

            t = timeit(step, device, n=10, warm=3)
            t_new = timeit(lambda: step(fresh=True), device, n=5, warm=1)
            emit(
                dict(
                    kind="train",
                    code="hybrid" if coulomb else "short-range",
                    N=n,
                    batch=4,
                    step_s=t,
                    step_with_plan_s=t_new,
                    structures_per_s=4 / t,
                )
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/gpu.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 32768, 262144, 1000000])
    parser.add_argument("--skip", nargs="*", default=[], choices=["checks", "infer", "train"])
    parser.add_argument(
        "--edge-chunk",
        type=int,
        default=2_000_000,
        help="edges per message chunk for the large sizes",
    )
    parser.add_argument(
        "--chunk-from", type=int, default=500_000, help="chunk the messages from this many atoms on"
    )
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    records = []

    def emit(d):
        d["device"] = name
        records.append(d)
        print(json.dumps(d), flush=True)
        write()

    def write():
        tmp = args.output + ".tmp"
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "records": records}, f, indent=1)
        os.replace(tmp, args.output)

    if "checks" not in args.skip:
        emit(dict(kind="check", what="device lists equal host lists", result=check_lists(device)))
        emit(
            dict(
                kind="check",
                what="model on device vs cpu (float64, max rel diff)",
                result=check_model_matches_cpu(device),
            )
        )
        emit(
            dict(
                kind="check",
                what="host syncs in forward+backward (plan prepared)",
                result=count_syncs(device),
            )
        )
    if "infer" not in args.skip:
        inference(args.sizes, device, emit, args.chunk_from, args.edge_chunk)
    if "train" not in args.skip:
        training(device, emit)
    header = ("kind", "code", "N", "time (s)", "+plan (s)", "skin (s)", "atom-steps/s", "KiB/atom")
    print("{:6} {:12} {:>8} {:>9} {:>9} {:>9} {:>13} {:>9}".format(*header))
    for r in records:
        if r["kind"] == "infer" and "t_s" in r:
            print(
                f"infer  {r['code']:12} {r['N']:8d} {r['t_s']:9.4f} "
                f"{r['t_with_graph_and_plan_s']:9.4f} {r['t_md_skin_s']:9.4f} "
                f"{r['atom_steps_per_s']:13.3g} {r['kib_per_atom'] or 0:9.1f}"
            )
        elif r["kind"] == "train":
            print(
                f"train  {r['code']:12} {r['N']:8d} {r['step_s']:9.4f} {r['step_with_plan_s']:9.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
