"""Training benchmark: structures per second of training steps (energy + force loss).

By default, rock-salt NaCl supercells of 64 and 512 atoms (a = 5.64 Å, random strain
and ~0.1 Å displacements) labelled by the Tosi-Fumi reference model
(:mod:`hybridpot.reference`; when it is unavailable, by the Lennard-Jones toy labels of
:mod:`hybridpot.train.synthetic`); with ``--structures FILE``, the first
``--batch-size`` labelled structures of FILE (any format ASE reads, with energies and
forces; e.g. a NaCl(aq) training file written by ``benchmarks/real_data.py``). For
each system, the default model in float32 with the Coulomb term (hybrid) and without it
(short-range only) takes ``--steps`` timed training steps
(:func:`hybridpot.train.steps.train_step`: forward with forces, loss, backward through
the forces, clipping, AdamW, EMA) after ``--warmup`` untimed ones. Every step batches
the structures anew, as the trainer does with shuffled batches, so the hybrid's
Coulomb plan (the real-space pair list and the PME parameters) is built every step.

``--breakdown`` times, for each hybrid, the parts of its step that the twin does not
have, each alone on the same batch (median over ``--steps``): building the Coulomb plan,
the Coulomb energy with its forces and the backward through them (charges fixed, as a
leaf), and the screening term that removes the pairs inside the cutoff (when the model
uses ``coulomb_split: "cutoff"``). ``--profile K`` runs one more step of each model
under ``torch.profiler`` and records its busy time and its K costliest operators: on a
GPU the summed kernel time, which is what several trainings sharing one GPU run out of
(the wall time of a launch-bound step hides it). Prints Markdown tables and writes JSON
(default ``benchmarks/results/training.json``).

    python benchmarks/training.py [--sizes 64 512 | --structures FILE] [--batch-size 4]
        [--steps 5] [--warmup 2] [--threads 2] [--device cpu] [--breakdown]
        [--profile K] [--output benchmarks/results/training.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.data import chemical_symbols

HERE = Path(__file__).resolve().parent


def supercell_repeat(n_atoms: int) -> int | None:
    """k with ``n_atoms`` = 8 k^3 (a cubic rock-salt supercell, k >= 1), else None."""
    k = round((max(n_atoms, 0) / 8) ** (1 / 3))
    return k if k >= 1 and 8 * k**3 == n_atoms else None


def nacl_structures(n_atoms: int, count: int, seed: int = 0):
    """``count`` labelled rock-salt supercells of ``n_atoms`` = 8 k^3 atoms and the
    name of the labelling model."""
    from hybridpot.train.synthetic import toy_nacl_structures

    k = supercell_repeat(n_atoms)
    if k is None:
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


def file_structures(path: str, count: int):
    """The first ``count`` structures of ``path`` (they must carry energies and forces)
    and the file's name as their label source."""
    from ase.io import read

    images = read(path, index=f":{count}")
    if len(images) < count:
        raise ValueError(
            f"--structures {path} holds {len(images)} structures, fewer than --batch-size {count}"
        )
    for index, atoms in enumerate(images):
        try:
            atoms.get_potential_energy()
            atoms.get_forces()
        except Exception as error:  # ase raises several kinds for a missing property
            raise ValueError(
                f"--structures {path}: structure {index} has no energy and forces ({error})"
            ) from None
    return images, f"{Path(path).name} (energies and forces as labelled)"


def median_seconds(function, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls of ``function`` (after one untimed)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def coulomb_breakdown(model, graphs, device, repeats: int) -> dict:
    """Seconds (medians) of the parts of a hybrid training step the twin lacks.

    ``plan_s``: building the batch's Coulomb plan; ``coulomb_s``: the Coulomb
    energies, their forces (``create_graph``) and the backward of a force loss, charges
    a leaf scaled by one parameter; ``screening_s`` (None unless ``coulomb_split:
    "cutoff"``): the same for the screening term alone.
    """
    from hybridpot.data import batch_graphs
    from hybridpot.electrostatics.screening import screening_energies

    electrostatics = model.electrostatics
    batch = batch_graphs(graphs).to(device)
    plan = batch.coulomb_plan(electrostatics)
    with torch.no_grad():
        charges = model(batch, compute_forces=False, compute_stress=False)["charges"]
    scale = torch.ones((), dtype=charges.dtype, device=device, requires_grad=True)

    def plan_once():  # the module's plan() builds afresh (graphs cache theirs)
        electrostatics.plan(batch.positions, batch.cell, batch.pbc, batch.batch)
        if device.type == "cuda":
            torch.cuda.synchronize()

    def through_forces(energy_of):
        positions = batch.positions.detach().clone().requires_grad_(True)
        energy = energy_of(positions, charges * scale).sum()
        (forces,) = torch.autograd.grad(energy, positions, create_graph=True)
        forces.square().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def coulomb(positions, q):
        return electrostatics(
            positions,
            batch.cell,
            batch.pbc,
            q,
            batch.batch,
            plan=plan,
            proportional_upstream=False,
            create_graph=True,
        )

    def screening(positions, q):
        vectors = batch.edge_vectors(positions, batch.cell)
        return screening_energies(
            q,
            batch.edge_index,
            vectors,
            model.cutoff,
            model.sigma_q,
            model.model_config.polynomial_degree,
        )

    return {
        "plan_s": median_seconds(plan_once, repeats),
        "coulomb_s": median_seconds(lambda: through_forces(coulomb), repeats),
        "screening_s": (
            median_seconds(lambda: through_forces(screening), repeats)
            if model.model_config.screened
            else None
        ),
    }


def bench(system: str, images: list, labels: str, coulomb: bool, args) -> dict:
    """Time training steps of one configuration on ``images``; returns the numbers."""
    import hybridpot
    from hybridpot.data import batch_graphs
    from hybridpot.data.dataset import graphs_from_structures
    from hybridpot.data.statistics import dataset_statistics
    from hybridpot.train.config import LossConfig
    from hybridpot.train.ema import ExponentialMovingAverage
    from hybridpot.train.loss import Loss
    from hybridpot.train.steps import train_step

    device = torch.device(args.device)
    cutoff = args.cutoff
    graphs = graphs_from_structures(images, cutoff, dtype=torch.float32)
    numbers = sorted({int(z) for atoms in images for z in atoms.numbers})
    elements = [chemical_symbols[z] for z in numbers]
    config = {"elements": elements, "cutoff": cutoff, "coulomb": coulomb}
    config.update(dataset_statistics(graphs, elements))
    torch.manual_seed(0)
    model = hybridpot.build_model(config).to(device=device, dtype=torch.float32)
    loss_fn = Loss(LossConfig(energy=1.0, forces=10.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ema = ExponentialMovingAverage(model, 0.99)

    def step():
        # Batched anew, like a shuffled batch: the Coulomb plan is built in the step.
        batch = batch_graphs(graphs).to(device)
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
    n_atoms = sum(len(atoms) for atoms in images)
    row = {
        "system": system,
        "atoms_per_batch": n_atoms,
        "model": "hybrid" if coulomb else "short-range",
        "batch_size": len(images),
        "labels": labels,
        "median_step_s": per_step,
        "structures_per_s": len(images) / per_step,
        "atoms_per_s": n_atoms / per_step,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if coulomb and args.breakdown:
        row["breakdown"] = coulomb_breakdown(model, graphs, device, args.steps)
    if args.profile:
        row["profile"] = profile_step(step, device, args.profile)
    return row


def profile_step(step, device, top: int) -> dict:
    """One more training step under ``torch.profiler``: where its time goes.

    On CUDA the clock is the GPU's: the summed time of the step's kernels
    (``busy_s``, what a GPU shared by several trainings runs out of) and its ``top``
    kernels by that time; on the CPU, the summed self time of the operators and the
    ``top`` operators. Each entry: ``name`` (cut to 120 characters), ``calls``,
    ``self_s``. ``wall_s`` is the profiled step's wall time (the profiler adds to it).
    """
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        step()
    wall = time.perf_counter() - start

    def self_us(event) -> float:
        if not cuda:
            return event.self_cpu_time_total
        value = getattr(event, "self_device_time_total", None)  # torch >= 2.4
        return event.self_cuda_time_total if value is None else value

    events = [
        e
        for e in prof.key_averages()
        if (e.device_type == torch.autograd.DeviceType.CUDA) == cuda and self_us(e) > 0
    ]
    events.sort(key=self_us, reverse=True)
    return {
        "clock": "cuda kernels" if cuda else "cpu operators",
        "wall_s": wall,
        "busy_s": sum(self_us(e) for e in events) * 1e-6,
        "top": [
            {"name": e.key[:120], "calls": e.count, "self_s": self_us(e) * 1e-6}
            for e in events[:top]
        ],
    }


def _ms(seconds) -> str:
    return "–" if seconds is None else f"{1000 * seconds:.0f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[64, 512],
        help="rock-salt cells of these atom counts (8 k^3)",
    )
    parser.add_argument(
        "--structures",
        default=None,
        help="time on the first --batch-size structures of this file instead",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="structures per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--cutoff", type=float, default=5.0, help="model cutoff (Å)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the hybrid's plan, Coulomb and screening parts alone",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="K",
        help="profile one more step of each model: busy time and the K costliest "
        "operators (CUDA kernels on a GPU)",
    )
    parser.add_argument("--output", default=str(HERE / "results" / "training.json"))
    args = parser.parse_args(argv)
    for name in ("batch_size", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(
                f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}"
            )
    for name in ("warmup", "profile"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be at least 0, got {getattr(args, name)}")
    if not args.cutoff > 0:
        parser.error(f"--cutoff must be a positive number of Å, got {args.cutoff}")
    not_cubes = [n for n in args.sizes if supercell_repeat(n) is None]
    if args.structures is None and not_cubes:
        parser.error(f"--sizes must be 8 k^3 atoms (cubic rock-salt cells), got {not_cubes}")
    torch.set_num_threads(args.threads)

    if args.structures is not None:
        try:
            images, labels = file_structures(args.structures, args.batch_size)
        except (OSError, ValueError) as error:
            parser.error(str(error))
        systems = [(Path(args.structures).name, images, labels)]
    else:
        systems = []
        for n in args.sizes:
            images, labels = nacl_structures(n, args.batch_size, seed=n)
            systems.append((f"rock-salt NaCl, {n} atoms", images, labels))
    rows = [
        bench(system, images, labels, coulomb, args)
        for system, images, labels in systems
        for coulomb in (True, False)
    ]
    print(
        f"training steps, float32, batch {args.batch_size}, device {args.device}, "
        f"{args.threads} threads; labels: {rows[0]['labels']}"
    )
    print()
    print("| system | atoms per batch | model | step (s) | structures/s | atoms/s |")
    print("|---|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['system']} | {r['atoms_per_batch']} | {r['model']} | {r['median_step_s']:.3f} | "
            f"{r['structures_per_s']:.2f} | {r['atoms_per_s']:.0f} |"
        )
    broken = [r for r in rows if "breakdown" in r]
    if broken:
        print()
        print(
            "| system | hybrid step (ms) | twin step (ms) | plan (ms) | Coulomb (ms) "
            "| screening (ms) |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        twins = {r["system"]: r for r in rows if r["model"] == "short-range"}
        for r in broken:
            parts = r["breakdown"]
            print(
                f"| {r['system']} | {_ms(r['median_step_s'])} | "
                f"{_ms(twins[r['system']]['median_step_s'])} | {_ms(parts['plan_s'])} | "
                f"{_ms(parts['coulomb_s'])} | {_ms(parts['screening_s'])} |"
            )
    for r in rows:
        if "profile" in r:
            p = r["profile"]
            print(
                f"\n{r['system']}, {r['model']}: {1000 * p['busy_s']:.1f} ms of {p['clock']} "
                f"in a {1000 * p['wall_s']:.0f} ms profiled step"
            )
            print("| operator | calls | self (ms) |")
            print("|---|---:|---:|")
            for e in p["top"]:
                print(f"| `{e['name'][:70]}` | {e['calls']} | {1000 * e['self_s']:.2f} |")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "command": "python benchmarks/training.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "dtype": "float32",
        "loss": "energy per atom (weight 1) + forces (weight 10), MSE",
        "batching": "anew every step (the Coulomb plan is built in the step)",
    }
    text = json.dumps({"meta": meta, "results": rows}, indent=2) + "\n"
    temporary = output.with_name(output.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(output)  # atomic: an interrupted run leaves the old file
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
