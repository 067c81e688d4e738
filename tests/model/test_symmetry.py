"""Invariance and equivariance of the whole hybrid model, Coulomb term on, float64.

Tolerance 1e-10: only round-off separates a structure from its rotated, reflected,
translated, permuted or re-wrapped copy.
"""

import numpy as np
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import graph_from_atoms
from hybridpot.testing.finite_differences import random_orthogonal, transformed
from hybridpot.testing.structures import (
    SMALL_CUTOFF as CUTOFF,
)
from hybridpot.testing.structures import (
    random_structure,
)
from hybridpot.testing.structures import (
    small_model_config as small_config,
)

TOL = 1e-10


def evaluate(model, atoms):
    out = model(graph_from_atoms(atoms, CUTOFF), compute_stress=bool(atoms.pbc.all()))
    return {k: v.detach().numpy() for k, v in out.items()}


STRUCTURES = {
    "triclinic": dict(seed=1, n=10),
    "charged": dict(seed=2, n=9, charge=1.0),
    "slab": dict(seed=3, n=8, pbc=(True, True, False)),
    "molecule": dict(seed=4, n=6, pbc=(False, False, False)),
}


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_and_reflection(model, name, reflect):
    atoms = random_structure(**STRUCTURES[name])
    rotation = random_orthogonal(np.random.default_rng(7), reflect)
    a, b = evaluate(model, atoms), evaluate(model, transformed(atoms, rotation))
    scale = max(1.0, abs(a[keys.ENERGY]).max())
    assert abs(b[keys.ENERGY] - a[keys.ENERGY]).max() < TOL * scale
    np.testing.assert_allclose(b[keys.CHARGES], a[keys.CHARGES], atol=TOL)
    np.testing.assert_allclose(b[keys.FORCES], a[keys.FORCES] @ rotation.T, atol=TOL * scale)
    if atoms.pbc.all():
        expected = rotation @ a[keys.STRESS][0] @ rotation.T
        np.testing.assert_allclose(b[keys.STRESS][0], expected, atol=TOL * scale)
    else:
        # The dipole of a molecule rotates (and flips under inversion) like a vector.
        np.testing.assert_allclose(b[keys.DIPOLE][0], rotation @ a[keys.DIPOLE][0], atol=TOL)


@pytest.mark.parametrize("name", STRUCTURES)
def test_translation_permutation_and_wrapping(model, name):
    atoms = random_structure(**STRUCTURES[name])
    reference = evaluate(model, atoms)
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.21, 2.9])
    out = evaluate(model, moved)
    assert abs(out[keys.ENERGY] - reference[keys.ENERGY]).max() < TOL * 10
    np.testing.assert_allclose(out[keys.FORCES], reference[keys.FORCES], atol=TOL * 10)

    perm = np.random.default_rng(0).permutation(len(atoms))
    out = evaluate(model, atoms[perm])
    assert abs(out[keys.ENERGY] - reference[keys.ENERGY]).max() < TOL * 10
    np.testing.assert_allclose(out[keys.FORCES], reference[keys.FORCES][perm], atol=TOL * 10)
    np.testing.assert_allclose(out[keys.CHARGES], reference[keys.CHARGES][perm], atol=TOL)

    if atoms.pbc.any():
        wrapped = atoms.copy()
        wrapped.wrap()
        out = evaluate(model, wrapped)
        assert abs(out[keys.ENERGY] - reference[keys.ENERGY]).max() < TOL * 10
        np.testing.assert_allclose(out[keys.FORCES], reference[keys.FORCES], atol=TOL * 10)


def chiral_molecule():
    import ase

    # Four different distances from a centre: a chiral (C1) arrangement.
    positions = [[0, 0, 0], [1.9, 0.1, 0.2], [-0.5, 2.1, 0.3], [-0.4, -0.7, 2.3], [0.2, -1.6, -1.4]]
    return ase.Atoms("NaClClNaCl", positions=positions)


def test_parity_off_tells_enantiomers_apart_and_parity_on_does_not():
    atoms = chiral_molecule()
    mirror = atoms.copy()
    mirror.positions[:, 0] *= -1
    torch.manual_seed(3)
    o3 = hybridpot.build_model(small_config(parity=True))
    energies = [evaluate(o3, x)[keys.ENERGY][0] for x in (atoms, mirror)]
    assert abs(energies[0] - energies[1]) < TOL
    torch.manual_seed(3)
    so3 = hybridpot.build_model(small_config(parity=False))
    energies = [evaluate(so3, x)[keys.ENERGY][0] for x in (atoms, mirror)]
    # A freshly initialised SO(3) network separates the mirror images by ~1e-7 eV here
    # (pseudo-scalar paths start small); round-off is ~1e-14 eV, so 1e-9 is a clear margin.
    assert abs(energies[0] - energies[1]) > 1e-9
