"""The ASE calculator end to end: numerical derivatives through ASE, caching, routing."""

import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress

import hybridpot
from hybridpot.testing.structures import random_structure
from hybridpot.testing.structures import small_model_config as small_config


@pytest.fixture(scope="module")
def calculator():
    torch.manual_seed(1)
    return hybridpot.HybridCalculator(model=hybridpot.build_model(small_config()))


def test_forces_and_stress_through_ase(calculator):
    atoms = random_structure(seed=51, n=6, charge=1.0)
    atoms.calc = calculator
    forces = atoms.get_forces()
    np.testing.assert_allclose(forces, calculate_numerical_forces(atoms, eps=1e-4), atol=1e-6)
    np.testing.assert_allclose(
        atoms.get_stress(), calculate_numerical_stress(atoms, eps=1e-5), atol=1e-7
    )
    assert abs(atoms.get_charges().sum() - 1.0) < 1e-12
    energy = atoms.get_potential_energy()
    assert energy == pytest.approx(
        calculator.results["energy_short"] + calculator.results["energy_coulomb"], abs=1e-10
    )
    assert atoms.get_potential_energies().sum() == pytest.approx(energy, abs=1e-9)


def test_results_are_reused_until_something_changes(calculator, monkeypatch):
    atoms = random_structure(seed=52, n=4)
    atoms.calc = calculator
    calls = []
    original = calculator.model.forward
    monkeypatch.setattr(
        calculator.model, "forward", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_charges()
    assert len(calls) == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_potential_energy()
    assert len(calls) == 2
    atoms.info["charge"] = 1.0
    atoms.get_potential_energy()
    assert len(calls) == 3
    assert abs(atoms.get_charges().sum() - 1.0) < 1e-12


@pytest.mark.parametrize("pbc", [(True, True, False), (False, False, False)])
def test_slab_and_molecule(calculator, pbc):
    atoms = random_structure(seed=53, n=5, pbc=pbc)
    atoms.calc = calculator
    np.testing.assert_allclose(
        atoms.get_forces(), calculate_numerical_forces(atoms, eps=1e-4), atol=1e-6
    )
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    if not any(pbc):
        dipole = calculator.results["dipole"]
        np.testing.assert_allclose(dipole, atoms.get_charges() @ atoms.positions, atol=1e-10)


def test_load_from_path_and_bad_arguments(tmp_path, calculator):
    path = tmp_path / "m.pt"
    hybridpot.save_model(calculator.model, path)
    calc = hybridpot.HybridCalculator(model_path=path, dtype="float32")
    atoms = random_structure(seed=54, n=4)
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(ValueError, match="exactly one of model= or model_path="):
        hybridpot.HybridCalculator()
    with pytest.raises(ValueError, match="dtype must be one of"):
        hybridpot.HybridCalculator(model=calculator.model, dtype="float16")
