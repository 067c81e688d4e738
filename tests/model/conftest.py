"""Random structures and a small model shared by the model tests."""

import ase
import numpy as np
import pytest

import hybridpot

CUTOFF = 3.5


def random_structure(
    seed: int,
    n: int = 8,
    pbc=(True, True, True),
    scale: float = 5.0,
    charge: float = 0.0,
    min_distance: float = 1.6,
) -> ase.Atoms:
    """Random Na/Cl structure in a random triclinic cell, atoms at least ``min_distance`` apart."""
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * scale + rng.uniform(-0.25, 0.25, (3, 3)) * scale
    if not all(pbc):
        # A non-periodic axis must be orthogonal to the periodic ones (slab routing).
        for axis in range(3):
            if not pbc[axis]:
                cell[axis] = 0.0
                cell[:, axis] = 0.0
                cell[axis, axis] = scale
    positions = []
    while len(positions) < n:
        trial = rng.uniform(0, 1, 3) @ cell
        probe = ase.Atoms("X" * (len(positions) + 1), positions=positions + [trial], cell=cell, pbc=pbc)
        if len(positions) == 0 or probe.get_distances(-1, range(len(positions)), mic=any(pbc)).min() > min_distance:
            positions.append(trial)
    symbols = ["Na", "Cl"] * (n // 2) + ["Na"] * (n % 2)
    atoms = ase.Atoms(symbols, positions=positions, cell=cell, pbc=pbc)
    # Unwrap some atoms by whole lattice vectors along periodic axes.
    for a in range(n):
        shift = rng.integers(-1, 2, 3) * np.asarray(pbc)
        atoms.positions[a] += shift @ cell
    atoms.info["charge"] = charge
    return atoms


def small_config(**overrides) -> dict:
    config = {
        "elements": ["Na", "Cl"],
        "cutoff": CUTOFF,
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


@pytest.fixture(scope="module")
def model():
    import torch

    torch.manual_seed(0)
    return hybridpot.build_model(small_config())
