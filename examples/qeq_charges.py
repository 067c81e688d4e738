"""Charge equilibration (Qeq) on its own: charges from electronegativity and hardness.

:func:`hybridpot.electrostatics.equilibrate_charges` finds the charges that minimise
sum chi q + (1/2) sum (J + J_self) q² + E_coulomb(q) with each group's total charge fixed
(``docs/qeq.md``), matrix-free by conjugate gradients on the Coulomb module. Here with
fixed, textbook-like parameters (chi_Na = -2, chi_Cl = +2 eV/e, J = 6 eV/e², Gaussian
charges of 1 Å), on three systems:

1. a rattled 64-ion NaCl crystal (PME): the charges, the CG iterations, and the same
   charges from a dense KKT solve (hybridpot.testing.qeq_reference) for comparison;
2. a Na-Cl pair pulled apart (direct sum): the charge transfer shrinks with distance,
   but does not vanish at dissociation (plain Qeq's known flaw: fractional charges
   on separated atoms);
3. the same pair as two fragments of charge 0 each: no transfer at any distance (what
   fragment constraints are for).

Then the forces on the crystal from the implicit gradient against finite differences.

    python examples/qeq_charges.py [--quick] [--output DIR]

Writes ``OUTPUT/qeq_charges/summary.json`` (every printed number).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hybridpot.data import graph_from_atoms
from hybridpot.electrostatics import Electrostatics, equilibrate_charges, qeq_energies
from hybridpot.electrostatics.qeq import self_hardness
from hybridpot.testing import rocksalt_supercell
from hybridpot.testing.qeq_reference import dense_qeq, matrix_from_energy

SIGMA_Q = 1.0


def parameters(numbers: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """chi (eV/e) and J (eV/e²) per atom: Na gives electrons away, Cl takes them."""
    sodium = torch.tensor(numbers == 11)
    chi = torch.where(sodium, -2.0, 2.0).double()
    return chi, torch.full_like(chi, 6.0)


def solve(atoms, electrostatics, groups=None, charges=None, positions=None, stats=None):
    graph = graph_from_atoms(atoms, 1.0)
    chi, hardness = parameters(atoms.numbers)
    groups = graph.batch if groups is None else groups
    charges = graph.total_charge if charges is None else charges
    positions = graph.positions if positions is None else positions
    q = equilibrate_charges(
        chi,
        hardness,
        positions,
        graph.cell,
        graph.pbc,
        graph.batch,
        groups,
        charges,
        electrostatics,
        tolerance=1e-10,
        stats=stats,
    )
    return graph, chi, hardness, q


def crystal(quick: bool, summary: dict) -> None:
    atoms = rocksalt_supercell(1 if quick else 2, np.random.default_rng(0), displacement=0.2)
    es = Electrostatics(sigma_q=SIGMA_Q, accuracy=1e-6)
    stats = {}
    graph, chi, hardness, q = solve(atoms, es, stats=stats)
    sodium = atoms.numbers == 11
    q = q.detach().numpy()
    print(f"1. rattled NaCl crystal, {len(atoms)} ions (PME)")
    print(f"   Na charges   {q[sodium].mean():+.4f} ± {q[sodium].std():.4f} e")
    print(f"   Cl charges   {q[~sodium].mean():+.4f} ± {q[~sodium].std():.4f} e")
    print(f"   sum          {q.sum():+.2e} e")
    print(f"   CG iterations {stats['iterations'][0]}, Coulomb evaluations {stats['evaluations']}")

    plan = es.plan(graph.positions, graph.cell, graph.pbc, graph.batch)

    def energy(charges):
        c = torch.as_tensor(charges, dtype=torch.float64)
        return float(es(graph.positions, graph.cell, graph.pbc, c, graph.batch, plan=plan).sum())

    dense, mu = dense_qeq(
        chi.numpy(),
        hardness.numpy() + self_hardness(SIGMA_Q),
        matrix_from_energy(energy, len(atoms)),
        np.zeros(len(atoms), dtype=int),
        [0.0],
    )
    difference = float(np.abs(q - dense).max())
    print(f"   dense KKT solve: max |q_CG - q_dense| {difference:.2e} e, mu {mu[0]:+.4f} eV/e")

    # Forces: -dE_q/dR through the implicit gradient, against central differences.
    positions = graph.positions.clone().requires_grad_()
    _, _, _, charges = solve(atoms, es, positions=positions)
    total = qeq_energies(chi, hardness, charges, SIGMA_Q).sum()
    total = total + es(positions, graph.cell, graph.pbc, charges, graph.batch).sum()
    (grad,) = torch.autograd.grad(total, positions)
    h, atom, axis = 1e-4, 3, 1
    values = []
    for sign in (1, -1):
        moved = graph.positions.clone()
        moved[atom, axis] += sign * h
        _, _, _, qm = solve(atoms, es, positions=moved)
        values.append(
            float(qeq_energies(chi, hardness, qm, SIGMA_Q).sum())
            + float(es(moved, graph.cell, graph.pbc, qm, graph.batch).sum())
        )
    numerical = -(values[0] - values[1]) / (2 * h)
    print(
        f"   force on atom {atom} (y): implicit {-float(grad[atom, axis]):+.6f}, "
        f"finite difference {numerical:+.6f} eV/Å"
    )
    summary["crystal"] = {
        "atoms": len(atoms),
        "na_mean": float(q[sodium].mean()),
        "cl_mean": float(q[~sodium].mean()),
        "sum": float(q.sum()),
        "iterations": stats["iterations"][0],
        "dense_difference": difference,
        "force_implicit": -float(grad[atom, axis]),
        "force_numerical": numerical,
    }


def dimer(quick: bool, summary: dict) -> None:
    import ase

    es = Electrostatics(sigma_q=SIGMA_Q)
    distances = [2.4, 4.0, 8.0] if quick else [2.0, 2.4, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0]
    print("2./3. Na-Cl pair: charge on Na (e) against distance (Å)")
    print("   distance   one group   two fragments")
    rows = []
    for d in distances:
        atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [d, 0, 0]])
        _, _, _, q = solve(atoms, es)
        fragments = torch.tensor([0, 1])
        _, _, _, qf = solve(atoms, es, groups=fragments, charges=torch.zeros(2).double())
        rows.append((d, float(q[0]), float(qf[0])))
        print(f"   {d:8.1f}   {float(q[0]):+9.4f}   {float(qf[0]):+13.4f}")
    summary["dimer"] = [{"distance": d, "q_na": a, "q_na_fragments": b} for d, a, b in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller systems (seconds)")
    parser.add_argument("--output", default="examples-output", help="output folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    summary: dict = {}
    crystal(args.quick, summary)
    dimer(args.quick, summary)
    out = Path(args.output) / "qeq_charges"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
