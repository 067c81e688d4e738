"""Neighbour lists against a brute-force search over periodic images."""

import itertools

import ase
import numpy as np
import pytest

from hybridpot.data import graph_from_atoms, neighbor_list


def brute_force_pairs(positions, cell, pbc, cutoff):
    """Set of (i, j, s1, s2, s3) with |r_j - r_i + s @ cell| < cutoff, by exhaustive search."""
    cell = np.asarray(cell, dtype=float)
    reach = []
    for axis in range(3):
        if not pbc[axis]:
            reach.append(range(1))
            continue
        # Images needed along this axis: cutoff over the plane spacing, plus the spread of
        # the (possibly unwrapped) positions in fractional units.
        height = abs(np.linalg.det(cell)) / np.linalg.norm(
            np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3])
        )
        frac = positions @ np.linalg.inv(cell)
        spread = frac[:, axis].max() - frac[:, axis].min()
        n = int(np.ceil(cutoff / height + spread)) + 1
        reach.append(range(-n, n + 1))
    pairs = set()
    for shift in itertools.product(*reach):
        offset = np.asarray(shift, dtype=float) @ cell
        d = np.linalg.norm(positions[None, :, :] + offset - positions[:, None, :], axis=-1)
        for i, j in zip(*np.nonzero(d < cutoff)):
            if i == j and not any(shift):
                continue
            pairs.add((int(i), int(j), *shift))
    return pairs


def random_triclinic_cell(rng, scale):
    cell = np.eye(3) * scale + rng.uniform(-0.35, 0.35, size=(3, 3)) * scale
    if np.linalg.det(cell) < 0:
        cell[0] *= -1
    return cell


def listed_pairs(positions, cell, pbc, cutoff):
    i, j, s = neighbor_list(positions, cell, pbc, cutoff)
    return {(int(a), int(b), *map(int, c)) for a, b, c in zip(i, j, s)}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "pbc", [(True, True, True), (True, True, False), (False, True, False), (False,) * 3]
)
def test_matches_brute_force_random_triclinic(seed, pbc):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(2.5, 6.0)  # small cells: cutoff often exceeds half the cell
    cell = random_triclinic_cell(rng, scale)
    n = int(rng.integers(1, 9))
    # Unwrapped positions: fractional coordinates well outside [0, 1).
    positions = rng.uniform(-1.5, 2.5, size=(n, 3)) @ cell
    cutoff = rng.uniform(2.0, 5.0)
    assert listed_pairs(positions, cell, pbc, cutoff) == brute_force_pairs(
        positions, cell, pbc, cutoff
    )


def test_single_atom_sees_its_own_images():
    cell = np.diag([2.0, 2.5, 3.0])
    pairs = listed_pairs(np.zeros((1, 3)), cell, (True, True, True), 3.1)
    assert pairs == brute_force_pairs(np.zeros((1, 3)), cell, (True,) * 3, 3.1)
    # +-x, +-2x (4.0 > 3.1 excluded), +-y, +-z, and the diagonal images inside 3.1 Å.
    assert (0, 0, 1, 0, 0) in pairs and (0, 0, -1, 0, 0) in pairs and (0, 0, 0, 0, 1) in pairs
    assert all(i == j == 0 for i, j, *_ in pairs)


def test_edge_vectors_match_shifts():
    rng = np.random.default_rng(3)
    cell = random_triclinic_cell(rng, 4.0)
    atoms = ase.Atoms("NaCl3", positions=rng.uniform(-3, 7, (4, 3)), cell=cell, pbc=True)
    g = graph_from_atoms(atoms, cutoff=4.5)
    vec = g.edge_vectors().numpy()
    i, j = g.edge_index.numpy()
    expected = atoms.positions[j] - atoms.positions[i] + g.cell_shifts.numpy() @ cell
    np.testing.assert_allclose(vec, expected, atol=1e-12)
    assert (np.linalg.norm(vec, axis=1) < 4.5).all()


def test_bad_cutoff_is_named():
    with pytest.raises(ValueError, match="cutoff"):
        neighbor_list(np.zeros((2, 3)), np.eye(3), (True,) * 3, 0.0)


def test_absurd_inputs_are_refused_before_the_search():
    """A 0.01 Å cell (wrong units) would list millions of images per atom; a molecule
    spread over 1e6 Å crashes vesin's grid (SIGFPE): both get a clear ValueError."""
    import pytest
    import torch

    from hybridpot.data.neighbors import neighbor_pairs

    with pytest.raises(ValueError, match="neighbours per atom"):
        neighbor_pairs(
            torch.zeros(2, 3, dtype=torch.float64),
            torch.eye(3, dtype=torch.float64) * 0.01,
            [True] * 3,
            3.5,
        )
    far = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1e6]], dtype=torch.float64)
    with pytest.raises(ValueError, match="non-periodic axis 2"):
        neighbor_pairs(far, torch.zeros(3, 3, dtype=torch.float64), [False] * 3, 3.5)
