"""The exact 2D Ewald reference against itself, finite differences and the 3D sum."""

import numpy as np
import pytest

from hybridpot.testing import ewald_sum, slab_ewald_sum, yeh_berkowitz_correction
from hybridpot.testing.tolerances import tolerances

TOL = tolerances(np.float64)


def _slab(seed, n=8, thickness=4.0):
    """A neutral slab in an oblique in-plane cell, positions unwrapped in-plane."""
    rng = np.random.default_rng(seed)
    a1 = np.array([6.0, 0.0, 0.0])
    a2 = np.array([1.7, 5.2, 0.0])
    frac = rng.uniform(0, 1, size=(n, 2))
    pos = frac[:, :1] * a1 + frac[:, 1:] * a2
    pos[:, 2] = rng.uniform(0, thickness, size=n)
    pos += rng.integers(-2, 3, size=(n, 1)) * a1 + rng.integers(-2, 3, size=(n, 1)) * a2
    q = rng.normal(size=n)
    q -= q.mean()
    cell = np.array([a1, a2, [0.0, 0.0, 0.0]])  # the non-periodic row may be zero
    return pos, q, cell


PBC = (True, True, False)


@pytest.mark.parametrize("sigma_q", [0.0, 0.5])
def test_independent_of_alpha(sigma_q):
    pos, q, cell = _slab(0)
    results = [
        slab_ewald_sum(pos, q, cell, PBC, sigma_q=sigma_q, alpha=a) for a in (None, 0.2, 0.5, 1.0)
    ]
    for res in results[1:]:
        assert res["energy"] == pytest.approx(results[0]["energy"], rel=TOL.reference)
        for key in ("forces", "potential"):
            scale = np.abs(results[0][key]).max()
            assert np.abs(res[key] - results[0][key]).max() < 10 * TOL.reference * scale


@pytest.mark.parametrize("sigma_q", [0.0, 0.5])
def test_forces_match_finite_differences(sigma_q):
    pos, q, cell = _slab(1, n=6)
    ref = slab_ewald_sum(pos, q, cell, PBC, sigma_q=sigma_q)
    h = TOL.fd_step
    forces = np.zeros_like(pos)
    for i in range(len(pos)):
        for k in range(3):
            plus, minus = pos.copy(), pos.copy()
            plus[i, k] += h
            minus[i, k] -= h
            forces[i, k] = -(
                slab_ewald_sum(plus, q, cell, PBC, sigma_q=sigma_q)["energy"]
                - slab_ewald_sum(minus, q, cell, PBC, sigma_q=sigma_q)["energy"]
            ) / (2 * h)
    assert np.abs(forces - ref["forces"]).max() < TOL.fd * np.abs(forces).max()
    # Energy is the quadratic form (1/2) q.phi.
    assert 0.5 * q @ ref["potential"] == pytest.approx(ref["energy"], rel=TOL.reference)


@pytest.mark.parametrize("sigma_q", [0.0, 0.5])
def test_3d_sum_with_vacuum_and_yeh_berkowitz_converges(sigma_q):
    # 3D Ewald of the slab repeated along z with period L, plus the dipole correction
    # 2 pi k_e M_z² / V: the remaining replica interactions fall off like
    # exp(-2 pi gap / in-plane period), so the error must shrink fast and reach ~1e-12.
    pos, q, cell = _slab(2)
    ref = slab_ewald_sum(pos, q, cell, PBC, sigma_q=sigma_q)
    errors, force_errors = [], []
    for length in (10.0, 20.0, 40.0):
        cell3 = cell.copy()
        cell3[2] = [0.0, 0.0, length]
        res = ewald_sum(pos, q, cell3, sigma_q=sigma_q)
        corr = yeh_berkowitz_correction(pos, q, cell3, axis=2)
        errors.append(abs(res["energy"] + corr["energy"] - ref["energy"]) / abs(ref["energy"]))
        force_errors.append(np.abs(res["forces"] + corr["forces"] - ref["forces"]).max())
        # Potentials agree up to a constant (the 3D sum sets the cell average to zero).
        diff = res["potential"] + corr["potential"] - ref["potential"]
        if length == 40.0:
            assert np.ptp(diff) < 1e-10 * np.abs(ref["potential"]).max()
    assert errors[0] > errors[1] > 1e-13 and errors[1] < 1e-7
    assert errors[2] < 1e-12
    assert force_errors[0] > force_errors[1] and force_errors[2] < 1e-10
    # Without the correction the 3D sum misses by the dipole term, visibly.
    cell3 = cell.copy()
    cell3[2] = [0.0, 0.0, 40.0]
    plain = ewald_sum(pos, q, cell3, sigma_q=sigma_q)["energy"]
    assert abs(plain - ref["energy"]) > 1e3 * errors[2] * abs(ref["energy"])


def test_any_vacuum_axis_and_rotation_give_the_same_slab():
    pos, q, cell = _slab(3)
    ref = slab_ewald_sum(pos, q, cell, PBC)
    # Periodic along rows 0 and 2 instead: permute the cell rows (positions unchanged).
    permuted = cell[[0, 2, 1]]
    res = slab_ewald_sum(pos, q, permuted, (True, False, True))
    assert res["energy"] == pytest.approx(ref["energy"], rel=TOL.reference)
    # A rotation moves the normal off z: forces rotate with it.
    rot, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    res = slab_ewald_sum(pos @ rot.T, q, cell @ rot.T, PBC)
    assert res["energy"] == pytest.approx(ref["energy"], rel=TOL.reference)
    assert np.abs(res["forces"] - ref["forces"] @ rot.T).max() < 1e-11 * np.abs(ref["forces"]).max()


def test_bad_input_messages():
    pos, q, cell = _slab(4)
    with pytest.raises(
        ValueError, match=r"pbc: expected exactly two periodic axes, got \(True, True, True\)"
    ):
        slab_ewald_sum(pos, q, cell, (True, True, True))
    with pytest.raises(ValueError, match="charges: the 2D reference needs a neutral slab"):
        slab_ewald_sum(pos, q + 0.1, cell, PBC)
    with pytest.raises(ValueError, match="span no area"):
        slab_ewald_sum(pos, q, [[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1]], PBC)
    with pytest.raises(ValueError, match="charges: the correction needs a neutral slab"):
        yeh_berkowitz_correction(pos, q + 0.1, np.diag([6.0, 5.0, 20.0]), axis=2)
