"""Central finite differences of an energy, for checking forces and stress.

Reusable by tests and users: give any ``energy(atoms) -> float`` (eV).
"""

from __future__ import annotations

from collections.abc import Callable

import ase
import numpy as np

from ..derivatives import VOIGT_INDICES


def numerical_forces(
    energy: Callable[[ase.Atoms], float], atoms: ase.Atoms, h: float = 1e-4
) -> np.ndarray:
    """(N, 3) eV/Å, F = -dE/dr by central differences with step ``h`` (Å)."""
    forces = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for k in range(3):
            shifted = []
            for sign in (+1, -1):
                moved = atoms.copy()
                moved.positions[a, k] += sign * h
                shifted.append(energy(moved))
            forces[a, k] = -(shifted[0] - shifted[1]) / (2 * h)
    return forces


def numerical_stress(
    energy: Callable[[ase.Atoms], float], atoms: ase.Atoms, h: float = 1e-5
) -> np.ndarray:
    """(6,) eV/Å³ in Voigt order, stress = (1/V) dE/dε by central differences.

    The symmetric strain moves the cell AND the atoms with it (scaled positions fixed),
    as in ASE's ``calculate_numerical_stress``.
    """
    volume = atoms.get_volume()
    cell = atoms.get_cell().array
    stress = np.zeros(6)
    for v, (a, b) in enumerate(VOIGT_INDICES):
        values = []
        for sign in (+1, -1):
            eps = np.zeros((3, 3))
            eps[a, b] += 0.5 * sign * h
            eps[b, a] += 0.5 * sign * h
            deformed = atoms.copy()
            deformed.set_cell(cell @ (np.eye(3) + eps), scale_atoms=True)
            values.append(energy(deformed))
        stress[v] = (values[0] - values[1]) / (2 * h) / volume
    return stress


def random_orthogonal(rng: np.random.Generator, reflect: bool) -> np.ndarray:
    """A random 3×3 rotation (det +1), or rotation times inversion (det -1) if ``reflect``."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if reflect else q


def transformed(atoms: ase.Atoms, rotation: np.ndarray) -> ase.Atoms:
    """``atoms`` with positions and cell rows multiplied by ``rotation`` (r -> R r)."""
    out = atoms.copy()
    out.positions = atoms.positions @ rotation.T
    out.set_cell(atoms.get_cell().array @ rotation.T, scale_atoms=False)
    return out
