"""Physical invariances: the split parameter, supercells, symmetry operations.

Split independence at fixed sigma_q (neutral and strongly charged cells): with Ewald at
a tight target the energy must not move by more than the ``ewald`` tolerance (1e-9) as
the smearing changes 2-3x; with PME by more than ``pme`` (1e-6). Extensivity:
E(2x2x2) = 8 E(1x1x1) to 1e-9 with Ewald and within the accuracy target with PME.
"""

import numpy as np
import pytest
from es_helpers import rel_rms, run

from hybridpot.derivatives import voigt, voigt_to_matrix
from hybridpot.testing import random_ionic_cell, tolerances
from hybridpot.testing.finite_differences import random_orthogonal, transformed

TOL = tolerances(np.float64)


def _cell(net_charge):
    return random_ionic_cell(16, np.random.default_rng(31), net_charge=net_charge, density=0.03)


@pytest.mark.parametrize("net_charge", [0.0, 6.0])
@pytest.mark.parametrize("sigma_q", [0.0, 0.5])
def test_energy_independent_of_split(net_charge, sigma_q):
    atoms = _cell(net_charge)
    ewald = [
        run(atoms, method="ewald", sigma_q=sigma_q, accuracy=1e-9, smearing=s)["energy"]
        for s in (0.8, 1.3, 2.2)
    ]
    assert max(ewald) - min(ewald) < TOL.ewald * abs(ewald[0])
    pme = [
        run(atoms, method="pme", sigma_q=sigma_q, accuracy=1e-6, smearing=s)["energy"]
        for s in (1.0, 1.5, 2.2)
    ]
    assert max(pme) - min(pme) < TOL.pme * abs(pme[0])
    assert pme[0] == pytest.approx(ewald[0], rel=TOL.pme)


def test_split_dependence_would_be_seen_without_background():
    # The charged cell's energy is dominated by the background term, which depends on
    # the smearing (pi Q^2 s^2 / V): the test above can fail if that term is wrong.
    atoms = _cell(6.0)
    q = atoms.get_initial_charges()
    volume = atoms.get_volume()
    spread = np.pi * 14.4 * q.sum() ** 2 * (2.2**2 - 0.8**2) / volume
    energy = run(atoms, method="ewald", accuracy=1e-9)["energy"]
    assert spread > 1e6 * TOL.ewald * abs(energy)


@pytest.mark.parametrize("net_charge", [0.0, 3.0])
def test_supercell_extensivity(net_charge):
    atoms = _cell(net_charge)
    big = atoms.repeat(2)
    big.set_initial_charges(np.tile(atoms.get_initial_charges(), 8))
    small_ewald = run(atoms, method="ewald", accuracy=1e-9)["energy"]
    big_ewald = run(big, method="ewald", accuracy=1e-9)["energy"]
    assert big_ewald == pytest.approx(8 * small_ewald, rel=TOL.ewald)
    accuracy = 1e-5
    small_pme = run(atoms, accuracy=accuracy)["energy"]
    big_pme = run(big, accuracy=accuracy)["energy"]
    assert big_pme == pytest.approx(8 * small_pme, rel=accuracy)


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_translation_and_wrapping(reflect):
    rng = np.random.default_rng(4)
    atoms = random_ionic_cell(30, rng, net_charge=1.0, density=0.03)
    fixed = {"smearing": 1.5, "real_space_cutoff": 8.0, "lr_wavelength": 0.8}
    base = run(atoms, method="ewald", **fixed)
    rotation = random_orthogonal(rng, reflect)
    moved = transformed(atoms, rotation)
    moved.positions += rng.uniform(-3, 3, size=3)  # translation
    moved.positions += rng.integers(-2, 3, size=(len(atoms), 3)) @ np.asarray(moved.cell)
    other = run(moved, method="ewald", **fixed)
    assert other["energy"] == pytest.approx(base["energy"], rel=TOL.exact)
    assert rel_rms(other["forces"], base["forces"] @ rotation.T) < TOL.exact
    np.testing.assert_allclose(other["potential"], base["potential"], rtol=0, atol=1e-9)
    stress = voigt_to_matrix(base["stress"])
    expected_voigt = voigt(rotation @ stress @ rotation.T)
    np.testing.assert_allclose(
        other["stress"], expected_voigt, atol=TOL.exact * np.abs(stress).max()
    )
