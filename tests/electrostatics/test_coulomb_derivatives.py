"""Autograd forces, stress and dE/dq against central finite differences of the energy.

The numerical parameters are fixed (overrides) so that the energy is one smooth function
of positions, cell and charges; the stress strain moves the atoms with the cell.
Tolerance ``fd`` (1e-6 of the largest component in float64: h^2 truncation ~1e-8 plus
rounding eps/h ~1e-12) from the shared tolerance table.
"""

import numpy as np
import pytest
from es_helpers import make_slab, run

from hybridpot.testing import random_ionic_cell, tolerances
from hybridpot.testing.finite_differences import numerical_forces, numerical_stress

TOL = tolerances(np.float64)

FIXED = {
    "pme": {"smearing": 1.2, "real_space_cutoff": 6.0, "mesh_spacing": 0.4},
    "p3m": {"smearing": 1.2, "real_space_cutoff": 6.0, "mesh_spacing": 0.4},
    "ewald": {"smearing": 1.2, "real_space_cutoff": 6.0, "lr_wavelength": 1.0},
}


def _charged_triclinic(seed=5, n=10):
    # A small charged triclinic cell (shorter than twice the cutoff: many images).
    return random_ionic_cell(n, np.random.default_rng(seed), net_charge=2.5, density=0.04)


def _energy(method, sigma_q=0.0, **extra):
    def energy(atoms):
        return run(atoms, method=method, sigma_q=sigma_q, **FIXED[method], **extra)["energy"]

    return energy


def _assert_close(numeric, analytic):
    scale = np.abs(analytic).max()
    assert np.abs(numeric - analytic).max() < TOL.fd * scale


@pytest.mark.parametrize("method", ["pme", "p3m", "ewald"])
@pytest.mark.parametrize("sigma_q", [0.0, 0.6])
def test_forces_and_stress_match_finite_differences(method, sigma_q):
    atoms = _charged_triclinic()
    result = run(atoms, method=method, sigma_q=sigma_q, **FIXED[method])
    energy = _energy(method, sigma_q)
    _assert_close(numerical_forces(energy, atoms, h=TOL.fd_step), result["forces"])
    _assert_close(numerical_stress(energy, atoms, h=TOL.fd_step), result["stress"])


def _numerical_potential(atoms, energy_of_charges, h):
    q = atoms.get_initial_charges()
    grad = np.zeros(len(q))
    for i in range(len(q)):
        up, down = q.copy(), q.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (energy_of_charges(up) - energy_of_charges(down)) / (2 * h)
    return grad


@pytest.mark.parametrize("method", ["pme", "ewald"])
def test_potential_is_charge_derivative_periodic(method):
    # Charged cell: changing q_i changes the net charge, so the background term enters.
    atoms = _charged_triclinic(seed=6)
    result = run(atoms, method=method, **FIXED[method])

    def energy(q):
        return run(atoms, q, method=method, **FIXED[method])["energy"]

    _assert_close(_numerical_potential(atoms, energy, 1e-4), result["potential"])


def test_potential_is_charge_derivative_slab_and_molecule():
    rng = np.random.default_rng(8)
    bulk = random_ionic_cell(12, rng, net_charge=1.5, density=0.03)
    for atoms in (make_slab(bulk, axis=1), bulk.copy()):
        if all(atoms.pbc):
            atoms.pbc = False
        kwargs = FIXED["pme"] if atoms.pbc.any() else {}
        result = run(atoms, **kwargs)

        def energy(q, atoms=atoms, kwargs=kwargs):
            return run(atoms, q, **kwargs)["energy"]

        _assert_close(_numerical_potential(atoms, energy, 1e-4), result["potential"])


def test_slab_and_molecule_forces_match_finite_differences():
    rng = np.random.default_rng(9)
    bulk = random_ionic_cell(10, rng, net_charge=-1.0, density=0.03)
    slab = make_slab(bulk, axis=0)
    params = {**FIXED["pme"], "slab_gap": 12.0}
    result = run(slab, **params)
    assert "stress" not in result  # not defined without a volume
    _assert_close(
        numerical_forces(lambda a: run(a, **params)["energy"], slab, h=TOL.fd_step),
        result["forces"],
    )
    molecule = bulk.copy()
    molecule.pbc = False
    result = run(molecule, sigma_q=0.3)
    assert "stress" not in result
    _assert_close(
        numerical_forces(lambda a: run(a, sigma_q=0.3)["energy"], molecule, h=TOL.fd_step),
        result["forces"],
    )
