"""An independent exact 2D Ewald sum (slab geometry) in plain NumPy/SciPy.

Charges periodic along two lattice vectors a1, a2 (area A = |a1 x a2|) and isolated
along the normal n = (a1 x a2)/A. For a NEUTRAL slab the 2D lattice sum of the pair
kernel phi(r) (1/r, or erf(r / 2 sigma_q)/r for Gaussian charges) is split as in 3D:
phi_SR = phi - erf(alpha r)/r is summed in real space (see ``ewald_reference``), and
the smooth part erf(alpha r)/r is summed exactly over the 2D lattice by the formula of
Parry (Surf. Sci. 49, 433 (1975)) / Heyes, Barber & Clarke (J. Chem. Soc. Faraday Trans. 2,
73, 1485 (1977)); de Leeuw & Perram (Physica A 113, 546 (1982)):

    E_LR = (1/2) sum_{i,j} q_i q_j W(r_i - r_j) - (alpha/sqrt(pi)) sum_i q_i²
    W(d) = (2 pi k_e / A) [ sum_{h in half plane} cos(h.d) g(|h|, z) / |h| - f(z) ]
    g(h, z) = e^{h z} erfc(h/(2 alpha) + alpha z) + e^{-h z} erfc(h/(2 alpha) - alpha z)
    f(z) = z erf(alpha z) + exp(-alpha² z²) / (alpha sqrt(pi))

with z = d.n and h the in-plane reciprocal vectors (h.a_i = 2 pi m_i); f is the h = 0
term (the potential of charged sheets, -2 pi |z| / A, smoothed), finite only because the
slab is neutral. It follows from the 3D Ewald sum with the period L_z -> infinity, the
k_z sum becoming an integral. Its derivatives are simple: dg/dz = h [e^{hz} erfc(..+..)
- e^{-hz} erfc(..-..)] (the Gaussian terms cancel) and df/dz = erf(alpha z).

The 3D sum of the same slab with a vacuum gap, plus the Yeh-Berkowitz dipole correction
(J. Chem. Phys. 111, 3155 (1999)), converges to this as the gap grows (tested).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf, erfc, erfcx

from .ewald_reference import (
    _TWO_OVER_SQRT_PI,
    COULOMB_CONSTANT,
    _cut_factor,
    _validate_alpha,
    _validate_sigma,
    real_space_sum,
    validate_charges,
)

_CHUNK = 2_000_000


def slab_ewald_sum(
    positions,
    charges,
    cell,
    pbc,
    *,
    sigma_q: float = 0.0,
    alpha: float | None = None,
    truncation: float = 1e-16,
) -> dict:
    """Coulomb energy, forces and potential of a neutral slab (two periodic axes).

    Args:
        positions: (N, 3) Å, need not be wrapped along the periodic axes.
        charges: (N,) e, summing to zero.
        cell: (3, 3) Å; the rows where ``pbc`` is True are the periodic vectors, the
            third row is ignored (it may be zero).
        pbc: three bools, exactly two True.
        sigma_q: Å, Gaussian charge width >= 0.
        alpha: 1/Å, splitting parameter; None picks one. The result does not depend on it.
        truncation: largest neglected Gaussian factor (as in ``ewald_sum``).

    Returns:
        dict with ``energy`` (eV), ``forces`` (N, 3) eV/Å, ``potential`` (N,) eV/e
        (dE/dq_i at fixed positions) and ``alpha`` (1/Å).

    Raises:
        ValueError: bad shapes or values, not exactly two periodic axes, parallel periodic
            vectors, a charged slab, or coincident point charges.
    """
    positions, charges = validate_charges(positions, charges)
    a1, a2, normal = _slab_basis(cell, pbc)
    sigma_q = _validate_sigma(sigma_q)
    total = float(charges.sum())
    if abs(total) > 1e-10 * max(1.0, float(np.abs(charges).sum())):
        raise ValueError(
            f"charges: the 2D reference needs a neutral slab (sum 0), got total {total:.6g} e"
        )
    area = float(np.linalg.norm(np.cross(a1, a2)))
    if alpha is None:
        # Real work ~ N² r_cut² / A, reciprocal work ~ N² h_cut² A (both per pair);
        # balanced near alpha ~ 2 / sqrt(A), a little lower as reciprocal terms cost more.
        alpha = 1.5 / math.sqrt(area)
    alpha = _validate_alpha(alpha)
    cut = _cut_factor(truncation)
    slowest = alpha if sigma_q == 0 else min(alpha, 1.0 / (2.0 * sigma_q))
    r_cut = cut / slowest
    h_cut = 2.0 * alpha * cut

    # Wrap along a1, a2 only (coordinates in the basis a1, a2, normal).
    basis = np.stack([a1, a2, normal])
    frac = positions @ np.linalg.inv(basis)
    frac[:, :2] -= np.floor(frac[:, :2])
    wrapped = frac @ basis

    shifts = _plane_translations(a1, a2, area, r_cut)
    real = real_space_sum(wrapped, charges, shifts, sigma_q, alpha, r_cut)
    recip = _long_range(wrapped, charges, a1, a2, normal, area, alpha, h_cut)
    self_potential = -COULOMB_CONSTANT * _TWO_OVER_SQRT_PI * alpha * charges
    potential = real["potential"] + recip["potential"] + self_potential
    return {
        "energy": 0.5 * float(np.dot(potential, charges)),
        "forces": real["forces"] + recip["forces"],
        "potential": potential,
        "alpha": alpha,
    }


def yeh_berkowitz_correction(positions, charges, cell, axis: int) -> dict:
    """Dipole correction that turns a 3D Ewald sum of a slab into the 2D one.

    E = 2 pi k_e M_z² / V with M_z = sum_i q_i r_i.n the dipole normal to the slab
    (n: unit normal of the two periodic cell vectors, i.e. the rows other than ``axis``).
    Valid for neutral slabs and ``positions`` unwrapped along n (one contiguous slab).

    Args:
        positions: (N, 3) Å. charges: (N,) e, summing to zero. cell: (3, 3) Å.
        axis: 0, 1 or 2, the non-periodic (vacuum) cell row.

    Returns:
        dict with ``energy`` (eV), ``forces`` (N, 3) eV/Å and ``potential`` (N,) eV/e.
    """
    positions, charges = validate_charges(positions, charges)
    pbc = [i != axis for i in range(3)]
    a1, a2, normal = _slab_basis(cell, pbc)
    total = float(charges.sum())
    if abs(total) > 1e-10 * max(1.0, float(np.abs(charges).sum())):
        raise ValueError(f"charges: the correction needs a neutral slab, got total {total:.6g}")
    volume = abs(float(np.linalg.det(np.asarray(cell, dtype=np.float64))))
    z = positions @ normal
    dipole = float(charges @ z)
    factor = 4.0 * math.pi * COULOMB_CONSTANT / volume
    return {
        "energy": 0.5 * factor * dipole**2,
        "forces": -factor * dipole * charges[:, None] * normal[None, :],
        "potential": factor * dipole * z,
    }


def _long_range(pos, q, a1, a2, normal, area, alpha, h_cut) -> dict:
    """(1/2) sum_ij q_i q_j W(r_i - r_j) with its forces and potential (see module doc)."""
    n = len(q)
    hvecs = _plane_reciprocal(a1, a2, normal, h_cut)
    hlen = np.linalg.norm(hvecs, axis=1)
    pref = 2.0 * math.pi * COULOMB_CONSTANT / area
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    potential = np.zeros(n)
    forces = np.zeros((n, 3))
    block = max(1, _CHUNK // max(1, len(hvecs)))
    for start in range(0, len(ii), block):
        i, j = ii[start : start + block], jj[start : start + block]
        d = pos[i] - pos[j]  # d = r_i - r_j
        z = d @ normal
        hd = d @ hvecs.T  # (P, H)
        g, dg = _g_and_dg(hlen[None, :], z[:, None], alpha)
        cos, sin = np.cos(hd), np.sin(hd)
        w = pref * ((cos * g) @ (1.0 / hlen) - _f(z, alpha))
        # grad W: in-plane from cos(h.d), normal from g(h, z) and f(z).
        grad = -pref * ((sin * g / hlen) @ hvecs)
        grad += pref * ((cos * dg) @ (1.0 / hlen) - erf(alpha * z))[:, None] * normal
        np.add.at(potential, i, q[j] * w)
        np.add.at(forces, i, -(q[i] * q[j])[:, None] * grad)
    return {"potential": potential, "forces": forces}


def _g_and_dg(h, z, alpha):
    """g(h, z) and dg/dz of the module docstring, without overflow."""
    plus = _exp_erfc(h, z, alpha)
    minus = _exp_erfc(h, -z, alpha)
    return plus + minus, h * (plus - minus)


def _exp_erfc(h, z, alpha):
    """exp(h z) erfc(h/(2 alpha) + alpha z), stable for large |h z|."""
    x = h / (2.0 * alpha) + alpha * z
    # For x >= 0 use erfc(x) = erfcx(x) exp(-x²): exponent h z - x² = -(h/2a)² - (a z)² <= 0.
    safe_x = np.maximum(x, 0.0)
    positive = erfcx(safe_x) * np.exp(-((h / (2.0 * alpha)) ** 2) - (alpha * z) ** 2)
    # For x < 0, z < -h/(2 alpha²) < 0 so exp(h z) < 1 and erfc(x) <= 2: no overflow.
    negative = np.exp(np.minimum(h * z, 0.0)) * erfc(np.minimum(x, 0.0))
    return np.where(x >= 0, positive, negative)


def _f(z, alpha):
    """h = 0 term z erf(alpha z) + exp(-alpha² z²)/(alpha sqrt(pi))."""
    return z * erf(alpha * z) + np.exp(-((alpha * z) ** 2)) / (alpha * math.sqrt(math.pi))


def _slab_basis(cell, pbc) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Periodic vectors a1, a2 (reduced) and the unit normal n of a slab cell."""
    flags = tuple(bool(p) for p in np.asarray(pbc).ravel())
    if len(flags) != 3 or sum(flags) != 2:
        raise ValueError(f"pbc: expected exactly two periodic axes, got {flags}")
    c = np.asarray(cell, dtype=np.float64)
    if c.shape != (3, 3) or not np.isfinite(c).all():
        raise ValueError(f"cell: expected a finite (3, 3) array, got {c.tolist()}")
    a1, a2 = (c[k].copy() for k in range(3) if flags[k])
    cross = np.cross(a1, a2)
    norm = float(np.linalg.norm(cross))
    if norm < 1e-10 * np.linalg.norm(a1) * np.linalg.norm(a2) or norm == 0.0:
        raise ValueError(f"cell: the periodic vectors {a1} and {a2} span no area")
    # Gauss reduction of the 2D lattice basis (same lattice, shortest vectors).
    for _ in range(100):
        if a1 @ a1 > a2 @ a2:
            a1, a2 = a2, a1
        m = round(float(a1 @ a2 / (a1 @ a1)))
        if m == 0:
            break
        a2 = a2 - m * a1
    return a1, a2, cross / norm


def _plane_translations(a1, a2, area, r_cut) -> np.ndarray:
    """(S, 3) Å, translations n1 a1 + n2 a2 that can reach within r_cut of a wrapped pair."""
    # Spacing of lattice lines parallel to a2 is area/|a2| (and vice versa); +1 for the
    # wrapped fractional separation in (-1, 1).
    n1 = int(np.floor(r_cut * np.linalg.norm(a2) / area + 1.0))
    n2 = int(np.floor(r_cut * np.linalg.norm(a1) / area + 1.0))
    m = np.stack(np.meshgrid(np.arange(-n1, n1 + 1), np.arange(-n2, n2 + 1)), -1).reshape(-1, 2)
    return m[:, :1] * a1 + m[:, 1:] * a2


def _plane_reciprocal(a1, a2, normal, h_cut) -> np.ndarray:
    """(H, 3) 1/Å, in-plane reciprocal vectors 0 < |h| < h_cut, one of each pair +-h."""
    signed_area = float(normal @ np.cross(a1, a2))
    b1 = 2.0 * math.pi * np.cross(a2, normal) / signed_area
    b2 = 2.0 * math.pi * np.cross(normal, a1) / signed_area
    m1 = int(np.floor(h_cut * np.linalg.norm(a1) / (2.0 * math.pi)))
    m2 = int(np.floor(h_cut * np.linalg.norm(a2) / (2.0 * math.pi)))
    m = np.stack(np.meshgrid(np.arange(-m1, m1 + 1), np.arange(-m2, m2 + 1)), -1).reshape(-1, 2)
    m = m[(m[:, 0] > 0) | ((m[:, 0] == 0) & (m[:, 1] > 0))]
    h = m[:, :1] * b1 + m[:, 1:] * b2
    return h[np.linalg.norm(h, axis=1) < h_cut]
