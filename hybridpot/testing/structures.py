"""Random Na/Cl structures and a tiny model configuration for model-level tests.

Shared by the package's tests (tests/model, tests/test_calculator.py) and usable by anyone
who wants to check a model on random, non-symmetric geometries of any periodicity.
"""

from __future__ import annotations

import ase
import numpy as np

#: Network cutoff (Å) of :func:`small_model_config`.
SMALL_CUTOFF = 3.5


def random_structure(
    seed: int,
    n: int = 8,
    pbc=(True, True, True),
    scale: float = 5.0,
    charge: float = 0.0,
    min_distance: float = 1.6,
) -> ase.Atoms:
    """Random Na/Cl structure, atoms at least ``min_distance`` Å apart.

    Periodic axes get a random triclinic cell of size ~``scale`` Å and atoms are unwrapped
    by random lattice vectors; a non-periodic axis is made orthogonal to the periodic ones
    (as slab electrostatics require). ``atoms.info["charge"] = charge``.
    """
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * scale + rng.uniform(-0.25, 0.25, (3, 3)) * scale
    for axis in range(3):
        if not pbc[axis]:
            cell[axis] = 0.0
            cell[:, axis] = 0.0
            cell[axis, axis] = scale
    positions: list[np.ndarray] = []
    probe = ase.Atoms(cell=cell, pbc=pbc)
    while len(positions) < n:
        trial = rng.uniform(0, 1, 3) @ cell
        if positions:
            probe = ase.Atoms(
                "X" * (len(positions) + 1), positions=positions + [trial], cell=cell, pbc=pbc
            )
            nearest = probe.get_distances(-1, range(len(positions)), mic=any(pbc)).min()
            if nearest <= min_distance:
                continue
        positions.append(trial)
    symbols = ["Na", "Cl"] * (n // 2) + ["Na"] * (n % 2)
    atoms = ase.Atoms(symbols, positions=positions, cell=cell, pbc=pbc)
    for a in range(n):
        atoms.positions[a] += (rng.integers(-1, 2, 3) * np.asarray(pbc)) @ cell
    atoms.info["charge"] = charge
    return atoms


def small_model_config(**overrides) -> dict:
    """A tiny Na/Cl hybrid model config (fast in tests); tight Coulomb accuracy (1e-8)."""
    config = {
        "elements": ["Na", "Cl"],
        "cutoff": SMALL_CUTOFF,
        "num_layers": 2,
        "hidden_irreps": "8x0e + 4x1o + 4x2e",
        "l_max": 2,
        "num_radial": 6,
        "radial_mlp": [16],
        "avg_num_neighbors": 8.0,
        "atomic_energies": {"Na": -1.3, "Cl": -2.1},
        "sigma_q": 0.5,
        "coulomb_accuracy": 1e-8,
    }
    config.update(overrides)
    return config
