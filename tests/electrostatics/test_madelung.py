"""Madelung constants of textbook crystals in all their cell forms.

Tolerances (issue 2, section 4): Ewald 1e-9 relative, PME 1e-6 at a tight accuracy
target (1e-7: at this target the mesh error of the energy is ~1e-10).
"""

import numpy as np
import pytest
from es_helpers import run

from hybridpot.testing import CRYSTALS, FORMS, crystal, madelung_from_energy, tolerances

TOL = tolerances(np.float64)


@pytest.mark.parametrize("name", sorted(CRYSTALS))
@pytest.mark.parametrize("form", FORMS)
def test_madelung_ewald(name, form):
    atoms = crystal(name, form, rng=np.random.default_rng(7))
    energy = run(atoms, method="ewald", accuracy=1e-8)["energy"]
    madelung = madelung_from_energy(energy, atoms)
    assert madelung == pytest.approx(atoms.info["madelung_constant"], rel=TOL.ewald)


@pytest.mark.parametrize("name", sorted(CRYSTALS))
@pytest.mark.parametrize("form", FORMS)
def test_madelung_pme(name, form):
    atoms = crystal(name, form, rng=np.random.default_rng(8))
    energy = run(atoms, method="pme", accuracy=1e-7)["energy"]
    madelung = madelung_from_energy(energy, atoms)
    assert madelung == pytest.approx(atoms.info["madelung_constant"], rel=TOL.pme)


@pytest.mark.parametrize("name", ["NaCl", "fluorite"])
def test_madelung_p3m_triclinic(name):
    # The rotated form is a rotated, scaled, skewed (triclinic) cell: P3M as fixed here
    # must be as exact as PME there (torch-pme 0.5's P3M influence function was not).
    atoms = crystal(name, "rotated", rng=np.random.default_rng(9))
    energy = run(atoms, method="p3m", accuracy=1e-7)["energy"]
    madelung = madelung_from_energy(energy, atoms)
    assert madelung == pytest.approx(atoms.info["madelung_constant"], rel=TOL.pme)


def test_madelung_forces_vanish_by_symmetry():
    # Every ion of rock salt sits at an inversion centre: the forces are zero.
    atoms = crystal("NaCl", "rotated", rng=np.random.default_rng(1))
    result = run(atoms, method="pme", accuracy=1e-6)
    scale = 14.4 / atoms.info["nearest_distance"] ** 2  # k_e q^2 / r0^2, eV/Å
    assert np.abs(result["forces"]).max() < 1e-6 * scale
