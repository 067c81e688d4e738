"""Molecular dynamics in LAMMPS with a hybrid model: NVE energy conservation, NPT density.

LAMMPS integrates; each step its ``fix external`` calls the model
(:class:`hybridpot.LammpsSession`) for energy, forces and virial of the whole periodic
cell (charges from the network, PME over the cell, forces and stress by autograd). By
default the model is the EXPORTED file (``hybridpot export``, loaded by
``metatomic_ase.MetatomicCalculator``, no hybridpot code in the evaluation);
``--python-model`` uses :class:`hybridpot.HybridCalculator` instead.

1. NVE: a 64-ion rock-salt cell at 300 K, velocity Verlet with 1 fs steps; prints the
   total-energy drift (eV/atom/ps, linear fit) and its fluctuation.
2. NPT: the same cell at 300 K and 0 bar (Nose-Hoover, LAMMPS ``fix npt iso``); prints
   the mean density of the second half against the starting (relaxed) density.

    python examples/lammps_md.py                    # trains a small model first if needed
    python examples/lammps_md.py --model runs/hybridpot/model.pt --nve-steps 10000
    python examples/lammps_md.py --quick

Needs the deploy extra (``pip install 'hybridpot[deploy]'``). Runs on ONE MPI rank (more
refuse to start). Writes ``OUTPUT/lammps_md/``: ``nve.csv`` and ``npt.csv`` (step, time,
energies, temperature, pressure, density) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import ase
import numpy as np
import torch
from _common import add_common_arguments, obtain_model
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

import hybridpot

#: g/mol per Å^3 -> g/cm^3
DENSITY_UNIT = 1.66053906660


def relaxed_crystal(calculator) -> ase.Atoms:
    """64-ion rock salt relaxed (ions and cell) with ``calculator``."""
    atoms = bulk("NaCl", "rocksalt", 5.62, cubic=True) * (2, 2, 2)
    atoms.calc = calculator
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-3, steps=200)
    atoms.calc = None
    return atoms


def run(session, steps: int, every: int, writer) -> list[dict]:
    rows = []
    for _ in range(max(steps // every, 1)):
        session.command(f"run {every} pre no post no")
        row = {
            name: session.thermo(name)
            for name in ("step", "pe", "ke", "etotal", "temp", "press", "vol", "density")
        }
        rows.append(row)
        writer.writerow(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument(
        "--python-model",
        action="store_true",
        help="evaluate with HybridCalculator instead of the exported file",
    )
    parser.add_argument("--nve-steps", type=int, default=None, help="default 1000 (quick 40)")
    parser.add_argument("--npt-steps", type=int, default=None, help="default 1000 (quick 40)")
    args = parser.parse_args()
    nve_steps = args.nve_steps or (40 if args.quick else 1000)
    npt_steps = args.npt_steps or (40 if args.quick else 1000)

    model_path = obtain_model(args.model, args.output, args.quick)
    folder = Path(args.output) / "lammps_md"
    folder.mkdir(parents=True, exist_ok=True)
    model = hybridpot.load_model(model_path).to(torch.float64)  # MD in float64
    python = hybridpot.HybridCalculator(model=model)
    if args.python_model:
        calculator, kind = python, "Python model (HybridCalculator)"
    else:
        try:
            from metatomic_ase import MetatomicCalculator
        except ImportError:
            raise SystemExit(
                "the exported model needs the deploy extra (or --python-model)"
            ) from None
        deployed = folder / "model-deployed.pt"
        hybridpot.export_model(model, deployed)
        calculator, kind = MetatomicCalculator(str(deployed)), f"exported file {deployed}"
    print(f"model: {kind}")

    crystal = relaxed_crystal(python)
    density0 = crystal.get_masses().sum() / crystal.get_volume() * DENSITY_UNIT
    print(
        f"relaxed 64-ion cell: a = {crystal.cell.lengths()[0] / 2:.4f} Å, "
        f"density {density0:.4f} g/cm^3"
    )
    summary = {"model": kind, "density_relaxed": density0}
    fields = ["step", "pe", "ke", "etotal", "temp", "press", "vol", "density"]

    with open(folder / "nve.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        with hybridpot.LammpsSession(crystal, calculator) as session:
            session.command(
                "velocity all create 600 2024 mom yes rot no dist gaussian\n"
                "fix nve all nve\ntimestep 0.001"
            )
            rows = run(session, nve_steps, 5, writer)
    energy = np.array([r["etotal"] for r in rows]) / len(crystal)
    time_ps = np.array([r["step"] for r in rows]) * 1e-3
    drift = float(np.polyfit(time_ps, energy, 1)[0]) if len(rows) > 1 else 0.0
    summary.update(
        nve_steps=nve_steps,
        nve_drift_eV_per_atom_ps=drift,
        nve_fluctuation_eV_per_atom=float(np.std(energy)),
        nve_mean_temperature=float(np.mean([r["temp"] for r in rows])),
    )
    print(
        f"NVE {nve_steps} steps of 1 fs: mean T {summary['nve_mean_temperature']:.0f} K, "
        f"drift {drift:.2e} eV/atom/ps, fluctuation {np.std(energy):.2e} eV/atom"
    )

    with open(folder / "npt.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        with hybridpot.LammpsSession(crystal, calculator) as session:
            session.command(
                "velocity all create 300 7 mom yes rot no dist gaussian\n"
                "fix npt all npt temp 300 300 0.1 iso 0 0 1.0\ntimestep 0.002"
            )
            rows = run(session, npt_steps, 5, writer)
    density = float(np.mean([r["density"] for r in rows[len(rows) // 2 :]]))
    summary.update(npt_steps=npt_steps, npt_density=density, npt_density_ratio=density / density0)
    print(
        f"NPT {npt_steps} steps of 2 fs at 300 K, 0 bar: density {density:.4f} g/cm^3 "
        f"= {density / density0:.4f} x relaxed (thermal expansion makes it < 1)"
    )
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
