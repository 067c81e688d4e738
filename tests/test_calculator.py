"""The ASE calculator end to end: numerical derivatives through ASE, caching, routing."""

import ase
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
    atoms.get_forces()  # energy and charges come with the forces
    atoms.get_potential_energy()
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
    if any(pbc):
        assert atoms.get_stress().shape == (6,)  # the slab's in-plane stress
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_dipole_moment()
        assert "dipole" not in calculator.results
    else:
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_stress()
        dipole = atoms.get_dipole_moment()
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


# ----------------------------------------------------------------------------- hardening
def test_the_callers_model_is_not_modified():
    torch.manual_seed(2)
    model = hybridpot.build_model(small_config())  # float64, training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calc = hybridpot.HybridCalculator(model=model, dtype="float32")
    atoms = random_structure(seed=55, n=4)
    atoms.calc = calc
    atoms.get_forces()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert calc.model is not model
    # Nothing to convert: the calculator uses the caller's model itself.
    model.eval()
    assert hybridpot.HybridCalculator(model=model).model is model


def _count_calls(calculator, monkeypatch):
    calls = []
    original = calculator.model.forward

    def forward(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(calculator.model, "forward", forward)
    return calls


def test_properties_decide_what_is_computed(monkeypatch):
    torch.manual_seed(1)
    calculator = hybridpot.HybridCalculator(model=hybridpot.build_model(small_config()))
    atoms = random_structure(seed=56, n=4)
    atoms.calc = calculator
    calls = _count_calls(calculator, monkeypatch)
    energy = atoms.get_potential_energy()
    assert calls[-1]["compute_forces"] is False and calls[-1]["compute_stress"] is False
    assert "forces" not in calculator.results and "stress" not in calculator.results
    atoms.get_charges()  # needs no derivative: reused
    assert len(calls) == 1
    forces = atoms.get_forces()
    assert calls[-1]["compute_forces"] is True and calls[-1]["compute_stress"] is False
    stress = atoms.get_stress()
    assert calls[-1]["compute_stress"] is True and len(calls) == 3
    atoms.get_forces(), atoms.get_potential_energy()
    assert len(calls) == 3
    assert atoms.get_potential_energy() == energy
    np.testing.assert_array_equal(atoms.get_forces(), forces)
    np.testing.assert_array_equal(atoms.get_stress(), stress)
    # A new structure, forces first: the energy comes with them, and the stress too
    # now that the caller has asked for it once (get_stress after get_forces is free).
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    atoms.get_potential_energy()
    assert len(calls) == 4 and calls[-1]["compute_stress"] is True
    atoms.get_stress()
    assert len(calls) == 4


def test_electrostatic_potential_is_a_property(calculator):
    atoms = random_structure(seed=57, n=4, charge=1.0)
    atoms.calc = calculator
    phi = calculator.get_property("electrostatic_potential", atoms)
    assert phi.shape == (4,) and np.isfinite(phi).all()
    # phi_i = dE_coulomb/dq_i: E_coulomb is quadratic in q, so sum_i q_i phi_i = 2 E_coulomb.
    q = atoms.get_charges()
    energy_coulomb = calculator.get_property("energy_coulomb", atoms)
    assert float(q @ phi) == pytest.approx(2 * energy_coulomb, rel=1e-8)


def test_total_charge_key_is_stored_with_the_model(tmp_path):
    torch.manual_seed(3)
    model = hybridpot.build_model(small_config())
    path = tmp_path / "m.pt"
    hybridpot.save_model(model, path, total_charge_key="Q")
    calc = hybridpot.HybridCalculator(model_path=path)
    assert calc.total_charge_key == "Q"
    atoms = random_structure(seed=58, n=4)
    del atoms.info["charge"]
    atoms.info["Q"] = 1.0
    atoms.calc = calc
    assert atoms.get_charges().sum() == pytest.approx(1.0, abs=1e-12)
    atoms.info["Q"] = -1.0  # a change of the key's value is a change of the structure
    assert atoms.get_charges().sum() == pytest.approx(-1.0, abs=1e-12)
    atoms.info["Q"] = "one"
    with pytest.raises(ValueError, match=r"atoms.info\['Q'\].*must be a finite number"):
        atoms.get_potential_energy()
    # Given explicitly, the key overrides the file's.
    calc = hybridpot.HybridCalculator(model_path=path, total_charge_key="charge")
    assert calc.total_charge_key == "charge"


def test_bad_device_names_the_argument(calculator):
    with pytest.raises(ValueError, match=r"device must be one of 'cpu', 'cuda', 'cuda:N'.*'gpu'"):
        hybridpot.HybridCalculator(model=calculator.model, device="gpu")
    with pytest.raises(TypeError, match="device must be a string"):
        hybridpot.HybridCalculator(model=calculator.model, device=3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device is 'cuda' but CUDA is not available"):
            hybridpot.HybridCalculator(model=calculator.model, device="cuda")


def _strained_energy(atoms, calculator, strain):
    strained = atoms.copy()
    deformation = np.eye(3) + strain
    strained.set_cell(atoms.cell @ deformation, scale_atoms=False)
    strained.positions = atoms.positions @ deformation
    strained.calc = calculator
    return strained.get_potential_energy()


@pytest.mark.parametrize(
    "charge",
    [
        0.0,
        1.0,
    ],
)
def test_slab_stress_is_the_in_plane_strain_derivative(calculator, charge):
    # Slab with z non-periodic: stress = (1/V) dE/d(strain) with V = area x the cell's
    # z length (ASE/LAMMPS convention), components involving z are zero.
    atoms = random_structure(seed=59, n=6, pbc=(True, True, False), charge=charge)
    atoms.calc = calculator
    stress = atoms.get_stress(voigt=False)
    volume = abs(np.linalg.det(atoms.cell))
    eps = 1e-5
    for a, b in ((0, 0), (1, 1), (0, 1)):
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = eps
        difference = _strained_energy(atoms, calculator, strain) - _strained_energy(
            atoms, calculator, -strain
        )
        expected = difference / (2 * eps) / volume / (1 if a == b else 2)
        # Central difference error ~ eps^2 * E''' ~ 1e-10 eV/Å³ here; 1e-8 leaves margin.
        assert stress[a, b] == pytest.approx(expected, abs=1e-8), (a, b)
    assert np.all(stress[2] == 0) and np.all(stress[:, 2] == 0)
    assert np.abs(stress[:2, :2]).max() > 1e-4  # not trivially zero


def test_slab_without_thickness_has_no_stress(calculator):
    atoms = random_structure(seed=60, n=4, pbc=(True, True, False))
    atoms.cell[2] = 0.0
    atoms.calc = calculator
    with pytest.raises(ValueError, match="cell's length along the non-periodic axis"):
        atoms.get_stress()


def test_slab_lattice_relaxes_with_a_masked_cell_filter(calculator):
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    a = 2.6  # a compressed NaCl monolayer, z is the vacuum axis
    atoms = ase.Atoms(
        "NaClClNa",
        scaled_positions=[[0, 0, 0.5], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.5, 0.5, 0.5]],
        cell=[2 * a, 2 * a, 12.0],
        pbc=(True, True, False),
    )
    atoms.rattle(0.05, seed=1)
    atoms.calc = calculator
    start_cell, start_energy = atoms.cell.copy(), atoms.get_potential_energy()
    in_plane = FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])
    assert BFGS(in_plane, logfile=None).run(fmax=0.002, steps=200)
    assert atoms.get_potential_energy() < start_energy
    assert np.abs(atoms.cell[:2, :2] - start_cell[:2, :2]).max() > 0.01  # the lattice moved
    np.testing.assert_array_equal(atoms.cell[2], start_cell[2])  # the vacuum axis did not
    assert np.all(atoms.cell[:2, 2] == 0)
    # Converged: the in-plane virial per atom is below the force threshold.
    stress = atoms.get_stress(voigt=False)
    assert np.abs(stress).max() * atoms.get_volume() / len(atoms) < 0.002
