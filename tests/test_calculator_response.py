"""The ASE calculator with fragments, an electric field and Born effective charges."""

import numpy as np
import pytest
import torch

import hybridpot
from hybridpot.testing.finite_differences import numerical_forces
from hybridpot.testing.structures import random_structure, small_model_config

FIELD = np.array([0.02, 0.01, -0.04])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    return hybridpot.build_model(small_model_config())


def molecule():
    atoms = random_structure(9, n=8, pbc=(False,) * 3, scale=6.0)
    atoms.arrays["fragment"] = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    atoms.info["fragment_charges"] = [0.5, -0.5]
    return atoms


def test_field_from_calculator_or_atoms_gives_the_same_result_and_not_both(model):
    atoms = molecule()
    atoms.calc = hybridpot.HybridCalculator(model=model, electric_field=FIELD)
    e_calc, f_calc = atoms.get_potential_energy(), atoms.get_forces()
    other = molecule()
    other.info["electric_field"] = FIELD.tolist()
    other.calc = hybridpot.HybridCalculator(model=model)
    assert other.get_potential_energy() == pytest.approx(e_calc, abs=1e-12)
    np.testing.assert_allclose(other.get_forces(), f_calc, atol=1e-12)
    both = molecule()
    both.info["electric_field"] = FIELD.tolist()
    both.calc = hybridpot.HybridCalculator(model=model, electric_field=FIELD)
    with pytest.raises(ValueError, match="electric field is given twice"):
        both.get_potential_energy()
    with pytest.raises(ValueError, match="electric_field"):
        hybridpot.HybridCalculator(model=model, electric_field=[1.0, 2.0])


def test_field_forces_through_ase_equal_finite_differences(model):
    atoms = molecule()
    atoms.calc = hybridpot.HybridCalculator(model=model, electric_field=FIELD)
    forces = atoms.get_forces()

    def energy(a):
        a.calc = hybridpot.HybridCalculator(model=model, electric_field=FIELD)
        return a.get_potential_energy()

    numeric = numerical_forces(energy, atoms.copy(), h=1e-4)
    assert np.abs(forces - numeric).max() <= 1e-6 * np.abs(forces).max()
    assert atoms.calc.get_property("energy_field", atoms) != 0.0


def test_changing_fragments_or_field_invalidates_the_cache(model):
    atoms = molecule()
    atoms.calc = hybridpot.HybridCalculator(model=model)
    q0 = atoms.get_charges().copy()
    assert q0[:4].sum() == pytest.approx(0.5, abs=1e-12)
    atoms.info["fragment_charges"] = [1.0, -1.0]
    q1 = atoms.get_charges()
    assert q1[:4].sum() == pytest.approx(1.0, abs=1e-12)
    assert q1[4:].sum() == pytest.approx(-1.0, abs=1e-12)
    e1 = atoms.get_potential_energy()
    atoms.info["electric_field"] = FIELD
    assert atoms.get_potential_energy() != e1
    del atoms.info["electric_field"]
    assert atoms.get_potential_energy() == pytest.approx(e1, abs=1e-12)
    atoms.info["charge"] = 2.0  # disagrees with the fragments
    with pytest.raises(ValueError, match="add up to"):
        atoms.get_potential_energy()


def test_bec_and_polarization_properties(model):
    bulk = random_structure(4, n=8, pbc=(True,) * 3, scale=5.0)
    bulk.calc = hybridpot.HybridCalculator(model=model)
    z = bulk.calc.get_property("born_effective_charges", bulk)
    assert z.shape == (8, 3, 3)
    np.testing.assert_allclose(z.sum(0), np.zeros((3, 3)), atol=1e-10)
    p = bulk.calc.get_property("polarization", bulk)
    np.testing.assert_allclose(p, bulk.get_charges() @ bulk.positions / bulk.get_volume(),
                               atol=1e-12)
    mol = molecule()
    mol.calc = hybridpot.HybridCalculator(model=model)
    z = mol.calc.get_property("born_effective_charges", mol)
    np.testing.assert_allclose(z.sum(0), np.zeros((3, 3)), atol=1e-10)
    with pytest.raises(Exception, match="polarization"):
        mol.calc.get_property("polarization", mol)
