"""Gaussian charges (sigma_q > 0): the analytic pair interaction and periodic cells."""

import math

import ase
import numpy as np
import pytest
import torch
from es_helpers import rel_max, rel_rms, run
from scipy.special import erf, erfc

from hybridpot.electrostatics.potential import GaussianCoulombPotential, pair_kernel
from hybridpot.keys import COULOMB_CONSTANT
from hybridpot.testing import ewald_sum, random_ionic_cell, tolerances

TOL = tolerances(np.float64)


@pytest.mark.parametrize("sigma_q", [0.3, 1.0])
@pytest.mark.parametrize("distance", [0.0, 1e-7, 0.2, 1.5, 7.0])
def test_gaussian_pair_matches_erf_formula(sigma_q, distance):
    q1, q2 = 0.7, -1.3
    pair = ase.Atoms("H2", positions=[[0, 0, 0], [distance, 0, 0]], pbc=False)
    result = run(pair, [q1, q2], sigma_q=sigma_q)
    width = 2.0 * sigma_q
    if distance < 1e-3 * width:
        # Taylor series: erf(r/w)/r = 2/(sqrt(pi) w) (1 - r^2/(3 w^2) + ...)
        kernel = 2.0 / (math.sqrt(math.pi) * width) * (1 - distance**2 / (3 * width**2))
        slope = -4.0 * distance / (3 * math.sqrt(math.pi) * width**3)
    else:
        kernel = erf(distance / width) / distance
        # d/dr [erf(r/w)/r] = (2/(sqrt(pi) w)) exp(-r^2/w^2)/r - erf(r/w)/r^2
        slope = 2 / (math.sqrt(math.pi) * width) * math.exp(-(distance**2) / width**2)
        slope = slope / distance - kernel / distance
    energy = COULOMB_CONSTANT * q1 * q2 * kernel
    assert result["energy"] == pytest.approx(energy, rel=1e-12)
    # Force on atom 2 along x: -dE/dr.
    assert result["forces"][1, 0] == pytest.approx(-COULOMB_CONSTANT * q1 * q2 * slope, abs=1e-9)
    assert result["potential"][0] == pytest.approx(COULOMB_CONSTANT * q2 * kernel, rel=1e-12)
    assert np.isfinite(result["forces"]).all()


def test_gaussian_kernels_finite_with_finite_gradients_at_zero():
    r = torch.tensor([0.0, 1e-9, 1e-4, 0.5, 3.0], dtype=torch.float64, requires_grad=True)
    # erf(r / 0.8) / r, and [erf(r / 0.8) - erf(r / 2)] / r (sigma_q = 0.4)
    for values in (pair_kernel(r, 0.4, torch.zeros_like(r)), pair_kernel(r, 0.4, 0.5 + 0 * r)):
        (grad,) = torch.autograd.grad(values.sum(), r, create_graph=True)
        (second,) = torch.autograd.grad(grad.sum(), r)
        assert torch.isfinite(values).all() and torch.isfinite(grad).all()
        assert torch.isfinite(second).all()
    # Series branch and closed form agree where they meet.
    a = torch.tensor([0.8e-3 * (1 - 1e-9), 0.8e-3 * (1 + 1e-9)], dtype=torch.float64)
    values = pair_kernel(a, 0.4, torch.zeros_like(a))
    assert abs(float(values[0] - values[1])) < 1e-12


def test_short_range_kernel_is_difference_of_erfs():
    potential = GaussianCoulombPotential(smearing=1.5, sigma_q=0.6, prefactor=1.0)
    r = torch.linspace(0.1, 12.0, 50, dtype=torch.float64)
    x = r.numpy()
    # erf(x/a) - erf(x/b) written as erfc(x/b) - erfc(x/a): no cancellation at large r.
    expected = (erfc(x / (math.sqrt(2) * 1.5)) - erfc(x / 1.2)) / x
    np.testing.assert_allclose(potential.sr_from_dist(r).numpy(), expected, rtol=1e-12)
    # Where no cancellation matters the plain erf form agrees too.
    near = x < 4
    np.testing.assert_allclose(
        potential.sr_from_dist(r).numpy()[near],
        ((erf(x / 1.2) - erf(x / (math.sqrt(2) * 1.5))) / x)[near],
        rtol=1e-12,
    )
    assert float(potential.background_correction()) == pytest.approx(
        math.pi * (1.5**2 - 2 * 0.6**2)
    )


@pytest.mark.parametrize("method", ["pme", "ewald"])
@pytest.mark.parametrize("net_charge", [0.0, 4.0])
def test_periodic_gaussian_charges_against_reference(method, net_charge):
    rng = np.random.default_rng(21)
    atoms = random_ionic_cell(40, rng, net_charge=net_charge, density=0.03)
    q = atoms.get_initial_charges()
    sigma_q = 0.8
    ref = ewald_sum(atoms.positions, q, np.asarray(atoms.cell), sigma_q=sigma_q)
    accuracy = 1e-5
    result = run(atoms, method=method, sigma_q=sigma_q, accuracy=accuracy)
    assert result["energy"] == pytest.approx(ref["energy"], rel=TOL.reference_energy)
    assert rel_rms(result["forces"], ref["forces"]) < accuracy
    assert rel_max(result["stress"], ref["stress"]) < accuracy
    assert rel_max(result["potential"], ref["potential"]) < accuracy


def test_coincident_gaussian_charges_are_finite():
    # Two Gaussian charges at the same place interact by 1/(sigma sqrt(pi)): allowed.
    rng = np.random.default_rng(22)
    atoms = random_ionic_cell(12, rng, density=0.02)
    atoms.positions[1] = atoms.positions[0] + 2 * np.asarray(atoms.cell)[1]  # an image
    q = atoms.get_initial_charges()
    ref = ewald_sum(atoms.positions, q, np.asarray(atoms.cell), sigma_q=0.5)
    result = run(atoms, method="ewald", sigma_q=0.5, accuracy=1e-8)
    assert result["energy"] == pytest.approx(ref["energy"], rel=TOL.ewald)
    assert np.isfinite(result["forces"]).all() and np.isfinite(result["stress"]).all()


def test_wide_gaussians_raise_the_split():
    # sigma_q = 2 Å needs s > 2.83 Å: chosen automatically, and still exact.
    rng = np.random.default_rng(23)
    atoms = random_ionic_cell(20, rng, density=0.02)
    q = atoms.get_initial_charges()
    ref = ewald_sum(atoms.positions, q, np.asarray(atoms.cell), sigma_q=2.0)
    result = run(atoms, sigma_q=2.0, accuracy=1e-5)
    assert result["energy"] == pytest.approx(ref["energy"], rel=TOL.reference_energy)
    assert rel_rms(result["forces"], ref["forces"]) < 1e-5


@pytest.mark.parametrize("sigma_q", [0.0, 0.7])
def test_pair_kernel_analytic_derivative_equals_autograd(sigma_q):
    """The real-space kernel's analytic backward (also at r -> 0 for Gaussians) equals
    autograd through the kernel, and its second derivative passes gradgradcheck."""
    from hybridpot.electrostatics.potential import PairKernel as _PairKernel

    r = torch.cat(
        [
            torch.linspace(1e-5 if sigma_q else 0.3, 9.0, 200, dtype=torch.float64),
            torch.tensor([1e-4, 2e-4], dtype=torch.float64)
            if sigma_q
            else torch.tensor([], dtype=torch.float64),
        ]
    )
    inv_width = torch.full_like(r, 1 / (2**0.5 * 1.6))
    inv_width[::3] = 0.0  # pairs of non-periodic structures: the whole kernel
    x = r.clone().requires_grad_(True)
    (ours,) = torch.autograd.grad(_PairKernel.apply(x, inv_width, sigma_q).sum(), x)
    (ref,) = torch.autograd.grad(pair_kernel(x, sigma_q, inv_width).sum(), x)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    sub = x[::20].detach().requires_grad_(True)
    assert torch.autograd.gradgradcheck(
        lambda y: _PairKernel.apply(y, inv_width[::20], sigma_q), (sub,)
    )
