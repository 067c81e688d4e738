"""How hybridpot routes the electrostatics: bulk, slab (2D-periodic) and charged molecule.

The Coulomb sum is picked from ``atoms.pbc`` (``docs/electrostatics.md``):

    pbc (T, T, T)   periodic: particle-mesh Ewald (torch-pme), neutralising background
    pbc (T, T, F)   slab: the 3D sum in a cell with vacuum plus the slab correction
    pbc (F, F, F)   molecule or cluster: direct pair sum; total charge from info["charge"]

Part 1 uses :func:`hybridpot.electrostatics.coulomb` with the formal ±1 charges on a
64-ion crystal (against the Madelung constant), a (100) slab (no dipole across it), a
polar (111) slab (alternating Na and Cl planes: a dipole across it) and a Na4Cl3+
cluster (against a pair sum written out here). For the slabs it compares the routed
result with an independent 2D Ewald sum (:func:`hybridpot.testing.slab_ewald_sum`) and
with the naive 3D periodic sum of the same cell with vacuum: that naive sum is only right
without a dipole across the slab; otherwise it is off by the Yeh-Berkowitz term
2 pi k_e M_z^2 / V and depends on the vacuum thickness.

Part 2 gives the (rattled) (100) slab and the charged cluster (``info["charge"] = 1``)
to a trained model through :class:`hybridpot.HybridCalculator`: its learned charges sum
to the total charge, and its Coulomb energy equals the independent sums of those charges.

    python examples/electrostatics_routing.py            # trains a small model if needed
    python examples/electrostatics_routing.py --model runs/hybridpot/model.pt
    python examples/electrostatics_routing.py --quick

Writes ``OUTPUT/electrostatics_routing/summary.json`` (every printed number) and the
structures as extended XYZ.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import ase
import ase.io
import numpy as np
from _common import add_common_arguments, obtain_model
from ase import units
from ase.build import bulk, surface

import hybridpot
from hybridpot.electrostatics import Electrostatics, coulomb
from hybridpot.keys import COULOMB_CONSTANT
from hybridpot.testing import slab_ewald_sum

#: k_e = e^2 / (4 pi eps0) in eV Å from ASE's CODATA units (Hartree x Bohr), written out
#: independently of hybridpot's constant.
K_E = units.Hartree * units.Bohr
#: Static lattice constant (Å) of the Tosi-Fumi crystal and NaCl's Madelung constant
#: (per ion pair, referred to the nearest-neighbour distance a/2).
A0 = 5.62
MADELUNG_NACL = 1.747564594633
#: Relative force accuracy asked of ``coulomb`` in part 1.
ACCURACY = 1e-6


def describe_route(electrostatics: Electrostatics, pbc) -> str:
    """:meth:`Electrostatics.route` (which sum a structure with ``pbc`` gets) in words.

    The numbers printed next to it (pair sum, 2D Ewald reference, Madelung constant) show
    that the sum really took this route.
    """
    route = electrostatics.route(pbc)
    if route == "direct":
        return "direct pair sum"
    if route.startswith("slab+"):
        method = route.removeprefix("slab+").upper()
        return f"slab: {method} in a cell with vacuum + slab correction"
    return f"periodic: {route.upper()}"


def pbc_text(atoms: ase.Atoms) -> str:
    return "(" + ",".join("T" if p else "F" for p in atoms.pbc) + ")"


def rocksalt_slab_100(vacuum: float) -> ase.Atoms:
    """4 (100) layers of 16 ions (64), ``vacuum`` Å on each side, pbc (T, T, F)."""
    atoms = bulk("NaCl", "rocksalt", a=A0, cubic=True).repeat((2, 2, 2))
    atoms.center(vacuum=vacuum, axis=2)
    atoms.pbc = (True, True, False)
    return atoms


def polar_slab_111(vacuum: float) -> ase.Atoms:
    """3 Na and 3 Cl (111) planes, alternating, 2 x 2 in plane (24 ions), pbc (T, T, F)."""
    atoms = surface(bulk("NaCl", "rocksalt", a=A0), (1, 1, 1), 3, vacuum=vacuum).repeat((2, 2, 1))
    atoms.pbc = (True, True, False)
    return atoms


def cation_cluster() -> ase.Atoms:
    """Na4Cl3+: a 2 x 2 x 2 rock-salt cube (Na4Cl4) with one Cl removed; pbc False."""
    cube = bulk("NaCl", "rocksalt", a=A0, cubic=True)  # 4 Na + 4 Cl on the cube corners
    cube.center()
    cluster = ase.Atoms(cube.numbers, cube.positions, pbc=False)
    del cluster[int(np.flatnonzero(cluster.numbers == 17)[-1])]
    cluster.info["charge"] = 1.0
    return cluster


def formal_charges(atoms: ase.Atoms) -> np.ndarray:
    return np.where(atoms.numbers == 11, 1.0, -1.0)


def pair_sum(positions: np.ndarray, charges: np.ndarray, sigma_q: float = 0.0) -> float:
    """E = sum_{i<j} k_e q_i q_j phi(r_ij), phi = 1/r (or erf(r / 2 sigma_q) / r), eV."""
    energy = 0.0
    for i in range(len(charges)):
        for j in range(i + 1, len(charges)):
            r = float(np.linalg.norm(positions[j] - positions[i]))
            phi = 1.0 / r if sigma_q == 0 else math.erf(r / (2.0 * sigma_q)) / r
            energy += K_E * charges[i] * charges[j] * phi
    return energy


def dipole_across(atoms: ase.Atoms, charges: np.ndarray) -> float:
    """e Å, M_z = sum_i q_i z_i along the slab normal (the cell's third row here)."""
    normal = atoms.cell.array[2] / np.linalg.norm(atoms.cell.array[2])
    return float(charges @ (atoms.positions @ normal))


def naive_3d(atoms: ase.Atoms, charges: np.ndarray, sigma_q: float = 0.0) -> float:
    """The same cell summed as if periodic in 3D (vacuum included): no slab correction."""
    periodic = atoms.copy()
    periodic.pbc = True
    return coulomb(periodic, charges, sigma_q=sigma_q, accuracy=ACCURACY)["energy"]


def part1(router: Electrostatics) -> dict:
    print("Part 1: formal charges (+1 Na, -1 Cl) through hybridpot.electrostatics.coulomb")
    relative = 1 - COULOMB_CONSTANT / K_E
    print(f"(k_e here: {K_E:.8f} eV Å, CODATA via ase.units; hybridpot uses torch-pme's")
    print(f" {COULOMB_CONSTANT:.8f}: hand-written pair sums are {relative:.0e} larger)\n")
    results = {}

    crystal = bulk("NaCl", "rocksalt", a=A0, cubic=True).repeat(2)
    q = formal_charges(crystal)
    energy = coulomb(crystal, q, accuracy=ACCURACY)["energy"]
    madelung = -energy / (len(crystal) / 2) * (A0 / 2) / K_E
    print(f"64-ion crystal, pbc {pbc_text(crystal)}: {describe_route(router, crystal.pbc)}")
    print(
        f"  E_coulomb = {energy:.6f} eV; Madelung constant {madelung:.8f} "
        f"(exact {MADELUNG_NACL:.8f}, rel. error {madelung / MADELUNG_NACL - 1:.1e})"
    )
    results["crystal"] = {
        "route": describe_route(router, crystal.pbc),
        "energy": energy,
        "madelung": madelung,
        "madelung_relative_error": madelung / MADELUNG_NACL - 1,
    }

    for key, title, build in (
        ("slab_100", "(100) slab, 64 ions", rocksalt_slab_100),
        ("slab_111", "polar (111) slab, 24 ions", polar_slab_111),
    ):
        slab = build(10.0)
        q = formal_charges(slab)
        route = describe_route(router, slab.pbc)
        routed = coulomb(slab, q, accuracy=ACCURACY)["energy"]
        reference = slab_ewald_sum(slab.positions, q, slab.cell.array, slab.pbc)["energy"]
        m_z = dipole_across(slab, q)
        print(f"\n{title}, pbc {pbc_text(slab)}: {route}")
        print(f"  dipole across the slab M_z = {m_z:+.4f} e Å")
        print(f"  coulomb(slab)                    {routed:14.6f} eV")
        print(
            f"  independent 2D Ewald sum         {reference:14.6f} eV   "
            f"(difference {routed - reference:+.1e} eV)"
        )
        naive = {}
        for vacuum in (10.0, 20.0, 40.0):
            cell = build(vacuum)
            volume = cell.get_volume()
            e3d = naive_3d(cell, q)
            # Yeh-Berkowitz: E_2D = E_3D + 2 pi k_e M_z^2 / V (tin-foil 3D sum, neutral slab).
            predicted = -2.0 * math.pi * K_E * dipole_across(cell, q) ** 2 / volume
            naive[vacuum] = {"energy": e3d, "error": e3d - reference, "yeh_berkowitz": predicted}
            print(
                f"  naive 3D sum, {vacuum:2.0f} Å vacuum each side {e3d:14.6f} eV   "
                f"(error {e3d - reference:+.3e} eV; -2 pi k_e M_z^2/V = {predicted:+.3e})"
            )
        if abs(naive[10.0]["error"]) > 1e3 * ACCURACY * abs(reference):
            print("  -> a dipole across the slab: the naive 3D sum is wrong and depends on the")
            print("     vacuum; the slab correction removes exactly that term")
        else:
            print("  -> no dipole across the slab: here the naive 3D sum happens to agree")
        results[key] = {
            "route": route,
            "energy": routed,
            "reference_2d": reference,
            "dipole": m_z,
            "naive_3d": {str(v): d for v, d in naive.items()},
        }

    cluster = cation_cluster()
    q = formal_charges(cluster)
    routed = coulomb(cluster, q, accuracy=ACCURACY)["energy"]
    by_hand = pair_sum(cluster.positions, q)
    route = describe_route(router, cluster.pbc)
    print(f"\nNa4Cl3+ cluster (total charge {q.sum():+.0f} e), pbc {pbc_text(cluster)}: {route}")
    print(f"  coulomb(cluster)                 {routed:14.9f} eV")
    print(
        f"  sum_i<j k_e q_i q_j / r_ij       {by_hand:14.9f} eV   "
        f"(difference {routed - by_hand:+.1e} eV)"
    )
    results["cluster"] = {"route": route, "energy": routed, "pair_sum": by_hand}
    return results


def part2(model_path: Path) -> tuple[dict, dict]:
    print("\nPart 2: the trained model through hybridpot.HybridCalculator\n")
    model = hybridpot.load_model(model_path)
    if model.electrostatics is None:
        raise ValueError(
            f"--model: expected a hybrid model (coulomb: true), got the short-range-only "
            f"model {str(model_path)!r}"
        )
    sigma_q = float(model.model_config.sigma_q)
    # The model's own sum for periodic cells and slabs (its config's coulomb_method).
    router = model.electrostatics
    results = {}
    structures = {}

    slab = rocksalt_slab_100(10.0)
    slab.rattle(0.05, seed=1)
    slab.calc = calc = hybridpot.HybridCalculator(model=model)
    energy = slab.get_potential_energy()
    r = dict(calc.results)
    q = r["charges"]
    reference = slab_ewald_sum(
        slab.positions, q - q.mean(), slab.cell.array, slab.pbc, sigma_q=sigma_q
    )["energy"]
    print(f"rattled (100) slab, pbc {pbc_text(slab)}: {describe_route(router, slab.pbc)}")
    print(
        f"  energy {energy:.4f} eV = short {r['energy_short']:.4f} + Coulomb "
        f"{r['energy_coulomb']:.4f} eV"
    )
    print(
        f"  learned charges: Na {q[slab.numbers == 11].mean():+.4f}, "
        f"Cl {q[slab.numbers == 17].mean():+.4f}, total {q.sum():+.1e} e"
    )
    print(
        f"  2D Ewald sum of the learned charges {reference:.6f} eV "
        f"(model - reference {r['energy_coulomb'] - reference:+.1e} eV); "
        f"naive 3D {naive_3d(slab, q, sigma_q):.6f} eV"
    )
    results["slab"] = {
        "route": describe_route(router, slab.pbc),
        "energy": energy,
        "energy_short": r["energy_short"],
        "energy_coulomb": r["energy_coulomb"],
        "charges_total": float(q.sum()),
        "charges_mean": {
            "Na": float(q[slab.numbers == 11].mean()),
            "Cl": float(q[slab.numbers == 17].mean()),
        },
        "reference_2d": reference,
    }
    structures["slab"] = slab

    cluster = cation_cluster()
    cluster.calc = calc = hybridpot.HybridCalculator(model=model)
    energy = cluster.get_potential_energy()
    r = dict(calc.results)
    q = r["charges"]
    by_hand = pair_sum(cluster.positions, q, sigma_q)
    print(
        f"\nNa4Cl3+ cluster, info['charge'] = {cluster.info['charge']:+.0f}, "
        f"pbc {pbc_text(cluster)}: {describe_route(router, cluster.pbc)}"
    )
    print(
        f"  energy {energy:.4f} eV = short {r['energy_short']:.4f} + Coulomb "
        f"{r['energy_coulomb']:.6f} eV"
    )
    print(
        f"  learned charges: {np.array2string(q, precision=3, sign='+')}, total {q.sum():+.12f} e"
    )
    print(
        f"  pair sum of the learned charges {by_hand:.6f} eV "
        f"(model - pair sum {r['energy_coulomb'] - by_hand:+.1e} eV)"
    )
    results["cluster"] = {
        "route": describe_route(router, cluster.pbc),
        "energy": energy,
        "energy_short": r["energy_short"],
        "energy_coulomb": r["energy_coulomb"],
        "charges": q.tolist(),
        "charges_total": float(q.sum()),
        "pair_sum": by_hand,
    }
    structures["cluster"] = cluster
    return results, structures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    args = parser.parse_args()
    out = Path(args.output) / "electrostatics_routing"
    out.mkdir(parents=True, exist_ok=True)
    # The periodic sum behind "auto" (the default of coulomb() and of models).
    # coulomb() with its default method routes exactly like this module.
    summary = {"formal_charges": part1(Electrostatics(sigma_q=0.0, accuracy=ACCURACY))}
    model_path = obtain_model(args.model, args.output, args.quick)
    summary["model"], structures = part2(model_path)
    summary["model_path"] = str(model_path)
    for name, atoms in structures.items():
        ase.io.write(out / f"{name}.extxyz", atoms)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nwrote {out}/summary.json, slab.extxyz, cluster.extxyz")


if __name__ == "__main__":
    main()
