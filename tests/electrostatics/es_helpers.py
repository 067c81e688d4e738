"""Small helpers shared by the electrostatics tests (error measures, slab builders)."""

from __future__ import annotations

import ase
import numpy as np

from hybridpot.electrostatics import coulomb


def rel_rms(values: np.ndarray, reference: np.ndarray) -> float:
    """RMS |values - reference| / RMS |reference| over atoms (the accuracy measure)."""
    error = np.sqrt(((values - reference) ** 2).sum(axis=-1).mean())
    return float(error / np.sqrt((reference**2).sum(axis=-1).mean()))


def rel_max(values: np.ndarray, reference: np.ndarray) -> float:
    """max |values - reference| / max |reference| (for stress and potentials)."""
    return float(np.abs(values - reference).max() / np.abs(reference).max())


def run(atoms: ase.Atoms, charges=None, **kwargs) -> dict:
    """``coulomb`` with the atoms' initial charges unless given."""
    if charges is None:
        charges = atoms.get_initial_charges()
    return coulomb(atoms, charges, **kwargs)


def make_slab(bulk: ase.Atoms, axis: int = 2, vacuum_row: float = 0.0) -> ase.Atoms:
    """Cut a slab out of a periodic cell: one cell thick along ``axis``, contiguous.

    The two other rows stay periodic; the ``axis`` row becomes ``vacuum_row`` Å along the
    unit normal (0: a zero row). Positions are wrapped along ``axis`` into one cell so the
    slab is contiguous, and stay unwrapped along the periodic rows.
    """
    cell = np.asarray(bulk.cell, dtype=np.float64).copy()
    rows = [r for r in range(3) if r != axis]
    normal = np.cross(cell[rows[0]], cell[rows[1]])
    normal /= np.linalg.norm(normal)
    frac = np.linalg.solve(cell.T, bulk.positions.T).T
    frac[:, axis] = frac[:, axis] % 1.0
    positions = frac @ cell
    cell[axis] = normal * vacuum_row
    slab = ase.Atoms(
        numbers=bulk.numbers, positions=positions, cell=cell, pbc=[r != axis for r in range(3)]
    )
    slab.set_initial_charges(bulk.get_initial_charges())
    return slab


def with_vacuum(slab: ase.Atoms, axis: int, vacuum: float) -> ase.Atoms:
    """The slab in a fully periodic cell whose ``axis`` row is thickness + vacuum along n."""
    cell = np.asarray(slab.cell, dtype=np.float64).copy()
    rows = [r for r in range(3) if r != axis]
    normal = np.cross(cell[rows[0]], cell[rows[1]])
    normal /= np.linalg.norm(normal)
    z = slab.positions @ normal
    cell[axis] = normal * (z.max() - z.min() + vacuum)
    bulk = slab.copy()
    bulk.cell = cell
    bulk.pbc = True
    return bulk
