"""Small labelled data sets for tests, examples and benchmarks (no DFT needed).

Rock-salt NaCl cells with random strain and displacements, labelled by ASE's smooth
Lennard-Jones pair potential (energy, forces, stress; element-blind, cheap and smooth),
with nominal charges +-1 e as charge labels. The numbers are not meant to be physical:
they are a smooth, learnable function of the geometry. For physically meaningful ionic
data use :mod:`hybridpot.reference` (Tosi-Fumi NaCl).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator

from ..derivatives import has_dipole, has_volume


def _label(atoms: Atoms, charges: np.ndarray, rc: float) -> Atoms:
    calc = LennardJones(sigma=2.2, epsilon=0.05, rc=rc, smooth=True)
    atoms.calc = calc
    results = {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(),
        "charges": charges,
    }
    if has_volume(atoms.pbc):
        results["stress"] = atoms.get_stress()
    if has_dipole(atoms.pbc):
        results["dipole"] = charges @ atoms.get_positions()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def toy_nacl_structures(
    count: int,
    *,
    repeat: tuple[int, int, int] = (1, 1, 1),
    cubic: bool = False,
    rattle: float = 0.1,
    strain: float = 0.03,
    lattice_constant: float = 5.64,
    seed: int = 0,
    rc: float = 4.0,
) -> list[Atoms]:
    """``count`` periodic rock-salt NaCl cells with labels.

    Args:
        count: number of structures.
        repeat: supercell of the (primitive, or cubic when ``cubic``) cell.
        cubic: start from the 8-atom conventional cell instead of the 2-atom primitive.
        rattle: standard deviation (Å) of the random displacements.
        strain: largest random strain component (symmetric, uniform in [-strain, strain]).
        lattice_constant: Å.
        seed: random seed (the data are a function of it).
        rc: Lennard-Jones cutoff (Å).

    Returns:
        Atoms with a SinglePointCalculator holding energy (eV), forces (eV/Å), stress
        (eV/Å³, Voigt) and charges (e, +-1).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    base = bulk("NaCl", "rocksalt", a=lattice_constant, cubic=cubic).repeat(repeat)
    images = []
    for _ in range(count):
        atoms = base.copy()
        eps = rng.uniform(-strain, strain, (3, 3))
        eps = 0.5 * (eps + eps.T)
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
        charges = np.where(atoms.numbers == 11, 1.0, -1.0)
        images.append(_label(atoms, charges, rc))
    return images


def toy_nacl_clusters(count: int, *, pairs: int = 2, seed: int = 0, rc: float = 4.0) -> list[Atoms]:
    """``count`` non-periodic Na_n Cl_n clusters (``pairs`` = n) with energy, forces,
    charges (+-1 e) and dipole (e·Å) labels, atoms about 2.8 Å apart."""
    if count < 1 or pairs < 1:
        raise ValueError(f"count and pairs must be >= 1, got {count} and {pairs}")
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        n = 2 * pairs
        grid = np.array([[i % 2, (i // 2) % 2, i // 4] for i in range(n)], dtype=float) * 2.8
        positions = grid + rng.normal(0.0, 0.1, grid.shape)
        # Alternate Na and Cl on the grid, as in rock salt.
        numbers = np.where(np.rint(grid / 2.8).sum(axis=1) % 2 == 0, 11, 17)
        atoms = Atoms(numbers=numbers, positions=positions, pbc=False)
        charges = np.where(atoms.numbers == 11, 1.0, -1.0)
        charges -= charges.mean()  # neutral even when the cluster is not stoichiometric
        images.append(_label(atoms, charges, rc))
    return images
