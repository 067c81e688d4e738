"""The NumPy Ewald reference checked against itself, finite differences and exact results."""

import math

import numpy as np
import pytest
from scipy.special import erf

from hybridpot.derivatives import voigt
from hybridpot.testing import COULOMB_CONSTANT, direct_sum, ewald_sum, random_ionic_cell
from hybridpot.testing.tolerances import tolerances

TOL = tolerances(np.float64)
KE = COULOMB_CONSTANT


def _system(seed, n=10, net_charge=0.0):
    atoms = random_ionic_cell(n, np.random.default_rng(seed), net_charge=net_charge, density=0.03)
    return atoms.positions, atoms.get_initial_charges(), atoms.cell.array


def _fd_forces(energy, positions, h):
    forces = np.zeros_like(positions)
    for i in range(len(positions)):
        for k in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[i, k] += h
            minus[i, k] -= h
            forces[i, k] = -(energy(plus) - energy(minus)) / (2 * h)
    return forces


def _fd_stress(energy, positions, cell, h):
    """(1/V) dE/dε with the symmetric strain applied to positions AND cell."""
    stress = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            values = []
            for sign in (1, -1):
                eps = np.zeros((3, 3))
                eps[a, b] += 0.5 * sign * h
                eps[b, a] += 0.5 * sign * h
                values.append(energy(positions @ (np.eye(3) + eps), cell @ (np.eye(3) + eps)))
            stress[a, b] = (values[0] - values[1]) / (2 * h)
    return stress / abs(np.linalg.det(cell))


def test_coulomb_constant_is_torchpme_value():
    from hybridpot.keys import COULOMB_CONSTANT as KEYS_CONSTANT

    assert KE == KEYS_CONSTANT


@pytest.mark.parametrize("sigma_q", [0.0, 0.45])
@pytest.mark.parametrize("net_charge", [0.0, 3.7])
def test_independent_of_alpha(sigma_q, net_charge):
    # Everything (energy, forces, stress, potential; background included) must not
    # depend on the split; only rounding (~1e-14) may differ.
    pos, q, cell = _system(1, net_charge=net_charge)
    results = [ewald_sum(pos, q, cell, sigma_q=sigma_q, alpha=a) for a in (None, 0.3, 0.5, 0.9)]
    ref = results[0]
    for res in results[1:]:
        assert res["energy"] == pytest.approx(ref["energy"], rel=TOL.reference)
        for key in ("forces", "stress", "potential"):
            scale = np.abs(ref[key]).max()
            assert np.abs(res[key] - ref[key]).max() < TOL.reference * scale * 10, key


@pytest.mark.parametrize("sigma_q", [0.0, 0.6])
def test_forces_and_potential_match_finite_differences(sigma_q):
    pos, q, cell = _system(2, n=8, net_charge=-1.3)
    ref = ewald_sum(pos, q, cell, sigma_q=sigma_q)
    h = TOL.fd_step
    forces = _fd_forces(lambda p: ewald_sum(p, q, cell, sigma_q=sigma_q)["energy"], pos, h)
    assert np.abs(forces - ref["forces"]).max() < TOL.fd * np.abs(forces).max()
    # phi_i = dE/dq_i, including the background's dependence on Q = sum q.
    potential = np.zeros(len(q))
    for i in range(len(q)):
        dq = np.zeros(len(q))
        dq[i] = h
        potential[i] = (
            ewald_sum(pos, q + dq, cell, sigma_q=sigma_q)["energy"]
            - ewald_sum(pos, q - dq, cell, sigma_q=sigma_q)["energy"]
        ) / (2 * h)
    assert np.abs(potential - ref["potential"]).max() < TOL.fd * np.abs(potential).max()
    # E is a quadratic form in q: E = (1/2) sum q_i phi_i exactly.
    assert 0.5 * q @ ref["potential"] == pytest.approx(ref["energy"], rel=TOL.reference)


@pytest.mark.parametrize("sigma_q", [0.0, 0.6])
@pytest.mark.parametrize("net_charge", [0.0, 2.5])
def test_stress_matches_finite_differences(sigma_q, net_charge):
    pos, q, cell = _system(3, n=8, net_charge=net_charge)
    ref = ewald_sum(pos, q, cell, sigma_q=sigma_q)
    stress = _fd_stress(
        lambda p, c: ewald_sum(p, q, c, sigma_q=sigma_q)["energy"], pos, cell, TOL.fd_step
    )
    assert np.abs(stress - ref["stress_tensor"]).max() < TOL.fd * np.abs(stress).max()
    assert np.allclose(
        ref["stress"],
        voigt(stress),
        rtol=0,
        atol=TOL.fd * np.abs(stress).max(),
    )


def test_wrapping_translation_and_supercell():
    pos, q, cell = _system(4, net_charge=1.0)
    ref = ewald_sum(pos, q, cell)
    rng = np.random.default_rng(0)
    moved = pos + rng.integers(-3, 4, size=pos.shape) @ cell + np.array([0.3, -7.0, 2.0])
    res = ewald_sum(moved, q, cell)
    assert res["energy"] == pytest.approx(ref["energy"], rel=TOL.reference)
    assert np.abs(res["forces"] - ref["forces"]).max() < 1e-11 * np.abs(ref["forces"]).max()
    # A 2x1x2 supercell: 4x the energy, the same forces on every copy, the same stress
    # (the background of the charged cell is extensive too).
    shifts = np.array([[i, 0, k] for i in range(2) for k in range(2)]) @ cell
    big_pos = np.concatenate([pos + s for s in shifts])
    big = ewald_sum(big_pos, np.tile(q, 4), np.diag([2, 1, 2]) @ cell)
    assert big["energy"] == pytest.approx(4 * ref["energy"], rel=TOL.reference)
    assert np.allclose(
        big["stress"], ref["stress"], rtol=0, atol=1e-12 * np.abs(ref["stress"]).max()
    )
    assert np.allclose(big["forces"], np.tile(ref["forces"], (4, 1)), rtol=0, atol=1e-10)


def test_point_charge_in_background_is_wigner_lattice():
    # One charge in a cubic box with its neutralising background: the simple-cubic
    # Wigner (jellium) lattice, E = -(k_e q² / 2L) * 2.837297479480620 (Nijboer & de Wette).
    q, length = 1.7, 3.3
    res = ewald_sum([[0.1, -4.0, 2.0]], [q], np.eye(3) * length)
    assert -2 * res["energy"] * length / (KE * q**2) == pytest.approx(2.837297479480620, rel=1e-12)
    # Cubic symmetry: isotropic stress, and E ~ 1/L gives stress = -E / (3V).
    assert np.allclose(res["stress"][:3], -res["energy"] / (3 * length**3), rtol=1e-12)
    assert np.abs(res["stress"][3:]).max() < 1e-14


def test_gaussian_pair_in_huge_box_approaches_erf_formula():
    # Two Gaussians (q = +-1) in a cubic box of side L, tin-foil boundary. A cubic array of
    # dipoles p has zero dipole lattice sum, so E(L) + 2 pi k_e p² / (3 L³) -> the isolated
    # pair energy -k_e erf(d / 2 sigma) / d with a residual ~ L^-5 (next multipole).
    sigma, d = 0.6, 1.3
    isolated = -KE * erf(d / (2 * sigma)) / d
    residuals = []
    for length in (40.0, 80.0):
        pos = np.array([[0, 0, 0], [0.6 * d, 0.8 * d, 0]]) + [3.0, -5.0, 1.0]
        res = ewald_sum(pos, [1.0, -1.0], np.eye(3) * length, sigma_q=sigma)
        corrected = res["energy"] + 2 * math.pi * KE * d**2 / (3 * length**3)
        residuals.append(abs(corrected - isolated) / abs(isolated))
    assert residuals[1] < 1e-9
    assert 20 < residuals[0] / residuals[1] < 45  # 2^5 = 32


@pytest.mark.parametrize("net_charge", [0.0, 2.3])
def test_wide_gaussians_equal_the_plain_fourier_sum(net_charge):
    # The definition itself, with no split: for wide clouds the sum
    #   E = (k_e / 2V) sum_{k != 0} 4 pi / k² exp(-k² sigma²) |S(k)|²
    #       - k_e sum q² / (2 sigma sqrt(pi))
    # converges on its own. This pins the sigma-dependent part of the background term,
    # which alpha-independence cannot see (it is a constant in alpha).
    sigma = 1.1
    pos, q, cell = _system(6, n=5, net_charge=net_charge)
    recip = 2 * np.pi * np.linalg.inv(cell).T
    m = np.stack(np.meshgrid(*[np.arange(-12, 13)] * 3, indexing="ij"), -1).reshape(-1, 3)
    m = m[np.any(m != 0, axis=1)]
    k = m @ recip
    k2 = np.sum(k**2, axis=1)
    # Truncation: every k on the edge of the integer box is negligible.
    edge = np.abs(m).max(axis=1) == 12
    assert np.exp(-k2[edge].min() * sigma**2) < 1e-20
    s = np.exp(1j * pos @ k.T).T @ q
    volume = abs(np.linalg.det(cell))
    energy = KE / (2 * volume) * np.sum(4 * np.pi / k2 * np.exp(-k2 * sigma**2) * np.abs(s) ** 2)
    energy -= KE * np.sum(q**2) / (2 * sigma * np.sqrt(np.pi))
    assert ewald_sum(pos, q, cell, sigma_q=sigma)["energy"] == pytest.approx(energy, rel=1e-12)


def test_direct_sum_is_the_pair_formula():
    rng = np.random.default_rng(5)
    pos = rng.uniform(-3, 3, size=(7, 3))
    q = rng.normal(size=7)
    for sigma in (0.0, 0.8):
        res = direct_sum(pos, q, sigma_q=sigma)
        energy = 0.0
        for i in range(7):
            for j in range(i):
                r = np.linalg.norm(pos[i] - pos[j])
                energy += KE * q[i] * q[j] * (erf(r / (2 * sigma)) if sigma else 1.0) / r
        assert res["energy"] == pytest.approx(energy, rel=1e-14)
        forces = _fd_forces(lambda p, s=sigma: direct_sum(p, q, sigma_q=s)["energy"], pos, 1e-5)
        assert np.abs(forces - res["forces"]).max() < 1e-7 * np.abs(forces).max()
    # Coincident Gaussians are finite: k_e q1 q2 / (sigma sqrt(pi)), zero force.
    res = direct_sum([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], [1.0, -2.0], sigma_q=0.5)
    assert res["energy"] == pytest.approx(-2 * KE / (0.5 * math.sqrt(math.pi)), rel=1e-14)
    assert np.all(res["forces"] == 0)


def test_coincident_gaussians_in_a_periodic_cell_are_finite_and_smooth():
    cell = np.diag([5.0, 6.0, 7.0])
    q = np.array([1.0, -1.0])
    energies = [
        ewald_sum([[1.0, 1.0, 1.0], [1.0 + x, 1.0, 1.0]], q, cell, sigma_q=0.5)["energy"]
        for x in (0.0, 1e-7, -1e-7)
    ]
    assert np.isfinite(energies).all()
    # Even in the separation: the two displaced values agree, the curvature is tiny.
    assert energies[1] == pytest.approx(energies[2], rel=1e-14)
    assert abs(energies[1] - energies[0]) < 1e-10


def test_bad_input_messages():
    cell = np.eye(3) * 4.0
    good = np.array([[0.0, 0, 0], [1.0, 1, 1]])
    q = np.array([1.0, -1.0])
    with pytest.raises(ValueError, match=r"positions: expected finite.*atoms \[1\]"):
        ewald_sum([[0.0, 0, 0], [np.nan, 0, 0]], q, cell)
    with pytest.raises(ValueError, match=r"positions: expected shape \(N, 3\)"):
        ewald_sum(np.zeros((2, 2)), q, cell)
    with pytest.raises(ValueError, match=r"charges: expected shape \(2,\), got \(3,\)"):
        ewald_sum(good, [1.0, 2.0, 3.0], cell)
    with pytest.raises(TypeError, match="charges: expected real numbers, got dtype bool"):
        ewald_sum(good, [True, False], cell)
    with pytest.raises(TypeError, match="charges: expected real numbers, got dtype complex"):
        ewald_sum(good, [1j, 0], cell)
    with pytest.raises(ValueError, match="charges: expected finite"):
        ewald_sum(good, [np.inf, 0], cell)
    with pytest.raises(ValueError, match="cell: expected a non-singular cell"):
        ewald_sum(good, q, [[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    with pytest.raises(ValueError, match=r"cell: expected shape \(3, 3\)"):
        ewald_sum(good, q, np.eye(2))
    with pytest.raises(ValueError, match="sigma_q: expected a finite width >= 0"):
        ewald_sum(good, q, cell, sigma_q=-0.1)
    with pytest.raises(ValueError, match="alpha: expected a finite splitting parameter > 0"):
        ewald_sum(good, q, cell, alpha=0.0)
    with pytest.raises(ValueError, match=r"point charges 0 and 1 coincide"):
        ewald_sum([[0.0, 0, 0], [0.0, 0, 0]], q, cell)
    # Coincident with a periodic image of the other atom.
    with pytest.raises(ValueError, match=r"point charges \d and \d coincide \(or an image"):
        ewald_sum([[0.0, 0, 0], [4.0, 0, -8.0]], q, cell)
    with pytest.raises(ValueError, match=r"point charges 0 and 1 coincide"):
        direct_sum([[1.0, 0, 0], [1.0, 0, 0]], q)
