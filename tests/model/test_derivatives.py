"""Forces and stress of the hybrid model against central finite differences.

Learned, position-dependent charges and the Coulomb term are on. The electrostatics run
at a tight accuracy (1e-8) so the energy is smooth to far below the tolerance; with
h = 1e-4 Å (1e-5 strain) the central-difference error is ~1e-8 relative, so 1e-6
relative is a tight check that still leaves room for round-off.
"""

import numpy as np
import pytest

from hybridpot import keys
from hybridpot.data import graph_from_atoms
from hybridpot.testing.finite_differences import numerical_forces, numerical_stress
from hybridpot.testing.structures import SMALL_CUTOFF as CUTOFF
from hybridpot.testing.structures import random_structure

CASES = {
    "triclinic": dict(seed=11, n=8, scale=5.5),
    "charged": dict(seed=12, n=7, charge=-1.0, scale=5.0),
    "small_cell": dict(seed=13, n=4, scale=3.6),  # cell shorter than 2 x cutoff (7 Å)
    "slab": dict(seed=14, n=6, pbc=(True, True, False)),
    "molecule": dict(seed=15, n=5, pbc=(False, False, False)),
}


def _energy(model):
    def energy(atoms):
        out = model(graph_from_atoms(atoms, CUTOFF), compute_forces=False, compute_stress=False)
        return float(out[keys.ENERGY][0])

    return energy


@pytest.mark.parametrize("name", CASES)
def test_forces_and_stress_match_finite_differences(model, name):
    atoms = random_structure(**CASES[name])
    out = model(graph_from_atoms(atoms, CUTOFF), compute_stress=bool(atoms.pbc.all()))
    forces = out[keys.FORCES].detach().numpy()
    # The charges really move with the atoms (otherwise the test would be weaker).
    assert out[keys.CHARGES].detach().std() > 1e-4
    expected = numerical_forces(_energy(model), atoms)
    scale = max(np.abs(expected).max(), 1e-3)
    np.testing.assert_allclose(forces, expected, atol=1e-6 * scale)
    if atoms.pbc.all():
        stress = out[keys.STRESS_VOIGT].detach().numpy()[0]
        expected = numerical_stress(_energy(model), atoms)
        np.testing.assert_allclose(stress, expected, atol=1e-6 * max(np.abs(expected).max(), 1e-4))
        # Virial = -V * stress.
        virial = out[keys.VIRIAL].detach().numpy()[0]
        np.testing.assert_allclose(
            virial, -atoms.get_volume() * out[keys.STRESS].detach().numpy()[0], atol=1e-12
        )


def test_potential_is_dE_dq(model):
    """electrostatic_potential = dE_coulomb/dq_i: compare with the charges' own energy."""
    atoms = random_structure(seed=16, n=6)
    out = model(graph_from_atoms(atoms, CUTOFF))
    q = out[keys.CHARGES].detach().numpy()
    phi = out[keys.POTENTIAL].detach().numpy()
    # The Coulomb energy is quadratic in q, so E_coulomb = (1/2) sum_i q_i phi_i.
    np.testing.assert_allclose(
        0.5 * q @ phi, out[keys.ENERGY_COULOMB].item(), rtol=1e-10, atol=1e-12
    )
