"""Single point and relaxation of a NaCl crystal with the hybrid model's ASE calculator.

A 64-ion rock-salt cell, expanded by 2 %, sheared by 1 % and rattled, is given to
:class:`hybridpot.HybridCalculator`. The example prints the single-point energy split
into its short-range (network) and Coulomb (exact Ewald/PME sum of the learned charges)
parts, the learned charges per element and the stress; then relaxes the ions at fixed
cell (BFGS) and then ions and cell together (BFGS on ASE's ``FrechetCellFilter``),
printing energy, largest force and stress after each stage and the final lattice constant.
The same relaxation with the Tosi-Fumi reference calculator the model was trained on
(:class:`hybridpot.reference.TosiFumiCalculator`) gives the lattice constant to compare
with.

    python examples/nacl_relax.py                     # trains a small model first if needed
    python examples/nacl_relax.py --model runs/hybridpot/model.pt
    python examples/nacl_relax.py --quick             # ~30 s model, looser comparison

Writes ``OUTPUT/nacl_relax/``: ``relax.log`` and ``relax_reference.log`` (the optimiser
logs of the model and of the reference), ``relax.traj`` (every step of both stages, ASE
trajectory), ``relaxed.extxyz`` (the final structure with its energy, forces, stress and
charges) and ``summary.json`` (every printed number).
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import ase.io
import numpy as np
from _common import add_common_arguments, obtain_model
from ase import units
from ase.build import bulk
from ase.data import chemical_symbols
from ase.filters import FrechetCellFilter
from ase.io.trajectory import Trajectory
from ase.optimize import BFGS

import hybridpot
from hybridpot.reference import TosiFumiCalculator

#: Å, the starting lattice constant: 2 % above the Tosi-Fumi model's static 5.620 Å.
START_A = 5.73
#: Symmetric shear strain (xy) of the starting cell and the rattle amplitude (Å).
START_SHEAR = 0.01
RATTLE = 0.05


def starting_cell() -> ase.Atoms:
    """A strained, rattled 64-ion rock-salt cell (2 x 2 x 2 conventional cells)."""
    atoms = bulk("NaCl", "rocksalt", a=START_A, cubic=True).repeat(2)
    strain = np.eye(3)
    strain[0, 1] = strain[1, 0] = START_SHEAR
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(RATTLE, seed=0)
    return atoms


def lattice_constant(atoms: ase.Atoms) -> float:
    """Å, the rock-salt lattice constant of the same volume: V = a^3 N / 8."""
    return float((8.0 * atoms.get_volume() / len(atoms)) ** (1.0 / 3.0))


def max_force(atoms: ase.Atoms) -> float:
    """eV/Å, the largest force on any atom."""
    return float(np.linalg.norm(atoms.get_forces(), axis=1).max())


def state(atoms: ase.Atoms) -> dict:
    """Energy (eV, eV/ion pair), its split, largest force, stress and lattice constant."""
    energy = atoms.get_potential_energy()
    stress_gpa = atoms.get_stress() / units.GPa
    results = atoms.calc.results
    return {
        "energy_eV": float(energy),
        "energy_per_pair_eV": float(2.0 * energy / len(atoms)),
        "energy_short_eV": float(results.get("energy_short", np.nan)),
        "energy_coulomb_eV": float(results.get("energy_coulomb", np.nan)),
        "max_force_eV_per_A": max_force(atoms),
        "pressure_GPa": float(-stress_gpa[:3].mean()),
        "max_abs_stress_GPa": float(np.abs(stress_gpa).max()),
        "lattice_constant_A": lattice_constant(atoms),
    }


def print_state(title: str, s: dict) -> None:
    print(f"{title}")
    print(
        f"  energy          {s['energy_eV']:12.4f} eV   ({s['energy_per_pair_eV']:.4f} eV per NaCl)"
    )
    print(f"  energy_short    {s['energy_short_eV']:12.4f} eV")
    print(f"  energy_coulomb  {s['energy_coulomb_eV']:12.4f} eV")
    print(f"  max |force|     {s['max_force_eV_per_A']:12.5f} eV/Å")
    print(
        f"  pressure        {s['pressure_GPa']:12.4f} GPa  (max |stress| "
        f"{s['max_abs_stress_GPa']:.4f} GPa)"
    )
    print(f"  lattice const.  {s['lattice_constant_A']:12.4f} Å")


def charge_summary(atoms: ase.Atoms) -> dict:
    """Learned charges (e): mean, spread and count per element, and their sum."""
    charges = atoms.get_charges()
    out = {"total": float(charges.sum())}
    for z in sorted(set(atoms.numbers)):
        symbol = chemical_symbols[z]
        q = charges[atoms.numbers == z]
        out[symbol] = {"mean": float(q.mean()), "std": float(q.std()), "count": int(q.size)}
    return out


def relax(atoms: ase.Atoms, fmax: float, steps: int, log: Path, trajectory: Trajectory) -> dict:
    """Fixed-cell BFGS, then ions + cell on a FrechetCellFilter; the state after each."""
    stages = {}
    optimizer = BFGS(atoms, logfile=str(log), trajectory=trajectory)
    converged = optimizer.run(fmax=fmax, steps=steps)
    stages["fixed_cell"] = {**state(atoms), "steps": optimizer.nsteps, "converged": bool(converged)}
    # The filter exposes the cell's strain as extra degrees of freedom whose "forces"
    # are the stress times the volume (per atom): at convergence both the forces and the
    # stress are small.
    optimizer = BFGS(FrechetCellFilter(atoms), logfile=str(log), trajectory=trajectory)
    with warnings.catch_warnings():
        # The filter takes the matrix logarithm of the deformation; SciPy warns that its
        # round-off estimate (~1e-12) "may be inaccurate", which is harmless here.
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
        converged = optimizer.run(fmax=fmax, steps=steps)
    cell_steps = optimizer.nsteps
    # The filter's convergence test sees the forces in the coordinates of the reference
    # cell (the true forces times the deformation gradient), which can leave the true
    # forces a few per cent above fmax when the cell has shrunk: polish at fixed cell.
    optimizer = BFGS(atoms, logfile=str(log), trajectory=trajectory)
    converged = converged and optimizer.run(fmax=fmax, steps=steps)
    stages["cell"] = {
        **state(atoms),
        "steps": cell_steps,
        "polish_steps": optimizer.nsteps,
        "converged": bool(converged),
    }
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--fmax", type=float, default=0.01, help="eV/Å, convergence criterion")
    parser.add_argument("--steps", type=int, default=300, help="most steps per stage")
    args = parser.parse_args()
    if not args.fmax > 0:
        parser.error(f"--fmax: expected a positive force in eV/Å, got {args.fmax}")
    if args.steps < 1:
        parser.error(f"--steps: expected a positive number of steps, got {args.steps}")
    out = Path(args.output) / "nacl_relax"
    out.mkdir(parents=True, exist_ok=True)
    model_path = obtain_model(args.model, args.output, args.quick)

    atoms = starting_cell()
    atoms.calc = hybridpot.HybridCalculator(model_path=str(model_path))
    print(f"\n{atoms.get_chemical_formula()}: {len(atoms)} ions, start a = {START_A} Å")
    start = state(atoms)
    charges = charge_summary(atoms)
    print_state("single point (strained, rattled start)", start)
    for symbol, q in charges.items():
        if symbol != "total":
            print(
                f"  charge {symbol:<2}       {q['mean']:+9.4f} ± {q['std']:.4f} e  ({q['count']})"
            )
    print(f"  charge total    {charges['total']:+12.2e} e")

    log, reference_log = out / "relax.log", out / "relax_reference.log"
    for path in (log, reference_log):
        path.unlink(missing_ok=True)  # the optimisers append
    with Trajectory(out / "relax.traj", "w", atoms) as trajectory:
        stages = relax(atoms, args.fmax, args.steps, log, trajectory)
    for name, title in (("fixed_cell", "ions only, fixed cell"), ("cell", "ions and cell")):
        s = stages[name]
        done = "converged" if s["converged"] else "NOT converged"
        polish = f" + {s['polish_steps']} fixed-cell polish" if s.get("polish_steps") else ""
        print_state(f"after relaxing {title} (BFGS: {s['steps']} steps{polish}, {done})", s)
    final_charges = charge_summary(atoms)
    ase.io.write(out / "relaxed.extxyz", atoms)

    # The reference the model was trained on, same start, same two stages.
    reference = starting_cell()
    reference.calc = TosiFumiCalculator()
    ref_stages = relax(reference, args.fmax, args.steps, reference_log, None)
    a_model = stages["cell"]["lattice_constant_A"]
    a_ref = ref_stages["cell"]["lattice_constant_A"]
    e_model = stages["cell"]["energy_per_pair_eV"]
    e_ref = ref_stages["cell"]["energy_per_pair_eV"]
    print("\nrelaxed crystal        hybrid model   Tosi-Fumi reference")
    print(f"  a (Å)                {a_model:12.4f}   {a_ref:12.4f}   ({a_model / a_ref - 1:+.2%})")
    print(f"  E (eV per NaCl)      {e_model:12.4f}   {e_ref:12.4f}   ({e_model - e_ref:+.4f} eV)")
    for symbol, reference_charge in (("Na", 1.0), ("Cl", -1.0)):
        learned = final_charges[symbol]["mean"]
        print(f"  charge {symbol} (e)        {learned:+12.4f}   {reference_charge:+12.4f}")

    summary = {
        "model": str(model_path),
        "fmax": args.fmax,
        "n_atoms": len(atoms),
        "start": start,
        "charges_start": charges,
        "charges_final": final_charges,
        **stages,
        "reference": ref_stages,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out}/relax.traj, relaxed.extxyz, relax.log, summary.json")


if __name__ == "__main__":
    main()
