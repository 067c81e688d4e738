"""An independent float64 Ewald sum in plain NumPy/SciPy (no torch, no torch-pme).

This is the yardstick the electrostatics module is tested against, so it is written for
clarity and exhaustive convergence, not speed (N = 300 atoms: ~0.3 s, 8,000: ~2 min).

Physics (Gaussian units times k_e = 14.399645478425667 eV·Å/e²)
------------------------------------------------------------
Charge i is a Gaussian cloud of width ``sigma_q`` (0 = point charge). Two clouds at
distance r interact by

    phi(r) = erf(r / (2 sigma_q)) / r          (1/r for point charges)

summed over all pairs and all periodic images; the self energy of each cloud (i = j in
the home cell) is excluded. The Ewald split with parameter ``alpha`` (1/Å) writes

    phi = phi_SR + phi_LR,   phi_LR(r) = erf(alpha r) / r,
    phi_SR(r) = [erfc(alpha r) - erfc(r / (2 sigma_q))] / r    (decays like a Gaussian)

phi_LR has the Fourier transform 4 pi exp(-k² / (4 alpha²)) / k² and is summed over
reciprocal vectors k != 0; its value at r = 0, 2 alpha / sqrt(pi), is the self term.

Boundary conditions: the k = 0 term is left out ("tin-foil" boundary; the average
electrostatic potential is zero). A net charge Q is neutralised by a uniform background.
The energy is then exactly the Fourier sum (k_e / 2V) sum_{k != 0} 4 pi/k² exp(-k² sigma_q²)
|S(k)|² minus the cloud self energies. Splitting that sum, the short-range kernel's k = 0
component, integral phi_SR d³r = pi (1/alpha² - 4 sigma_q²), must be removed from the
real-space lattice sum, giving the background term

    E_bg = -pi k_e Q² (1/alpha² - 4 sigma_q²) / (2 V)

(which reduces to the familiar -pi k_e Q² / (2 V alpha²) for point charges). With it the
total is independent of alpha, which the tests check to 1e-12.

Derivatives are analytic: forces F_i = -dE/dr_i, the potential phi_i = dE/dq_i (the
background included, as Q depends on q_i), and the stress (1/V) dE/d(strain) with ASE's
sign, where the strain moves positions and cell together: pair terms contribute
(1/2) sum q_i q_j phi_SR'(r) r_a r_b / r, the reciprocal sum -delta_ab E_k +
(k_e/V) sum_k |S|² A(k) k_a k_b (1/k² + 1/(4 alpha²)), and the background -delta_ab E_bg.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf, erfc

# Only the Voigt order (ASE's convention, one place in the package) is shared with the
# code under test; every number here is computed with NumPy/SciPy.
from ..derivatives import voigt

#: k_e = 1/(4 pi eps0) in eV·Å/e² (the value torchpme.prefactors.eV_A uses).
COULOMB_CONSTANT = 14.399645478425667


_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
# Below this distance (Å) two point charges are "coincident": their energy is infinite.
_COINCIDENT = 1e-8
# Elements processed at once in the vectorised loops (bounds memory to ~100 MB).
_CHUNK = 2_000_000


def ewald_sum(
    positions,
    charges,
    cell,
    *,
    sigma_q: float = 0.0,
    alpha: float | None = None,
    truncation: float = 1e-16,
) -> dict:
    """Coulomb energy, forces, stress and potential of a fully periodic cell by Ewald sum.

    Args:
        positions: (N, 3) Å, need not be wrapped into the cell.
        charges: (N,) e; any total (a net charge gets the neutralising background).
        cell: (3, 3) Å, rows are lattice vectors, any (non-singular) triclinic shape.
        sigma_q: Å, width of the Gaussian charges, >= 0 (0 = point charges).
        alpha: 1/Å, Ewald splitting parameter (long-range kernel erf(alpha r)/r);
            None picks one that balances real and reciprocal work. The result does not
            depend on it (to ~1e-13 relative).
        truncation: size of the largest neglected Gaussian factor, erfc(alpha r_cut) and
            exp(-k_cut² / (4 alpha²)); 1e-16 converges the energy to ~1e-13 relative.

    Returns:
        dict with ``energy`` (eV), ``forces`` (N, 3) eV/Å, ``stress`` (6,) eV/Å³ Voigt
        xx yy zz yz xz xy (ASE sign), ``stress_tensor`` (3, 3) eV/Å³, ``potential`` (N,)
        eV/e = dE/dq_i, and the parameters used: ``alpha`` (1/Å), ``r_cut`` (Å),
        ``k_cut`` (1/Å).

    Raises:
        ValueError: non-finite or wrongly shaped input, a singular cell, negative
            ``sigma_q``, a non-positive ``alpha``, or coincident point charges.
    """
    positions, charges = validate_charges(positions, charges)
    cell = validate_cell(cell)
    sigma_q = _validate_sigma(sigma_q)
    cut = _cut_factor(truncation)
    lattice = reduced_basis(cell)  # same lattice, shortest vectors: fewer images
    volume = abs(np.linalg.det(lattice))
    n = len(charges)
    if alpha is None:
        # Real work ~ N² r_cut³ / V, reciprocal work ~ N k_cut³ V with r_cut = cut/alpha,
        # k_cut = 2 cut alpha: equal counts when (alpha³ V)² = 2 pi³ N. A real-space term
        # costs more than a reciprocal one; 1.4x that alpha was fastest for N = 8..1000.
        alpha = 1.4 * (2.0 * math.pi**3 * n) ** (1.0 / 6.0) / volume ** (1.0 / 3.0)
    alpha = _validate_alpha(alpha)
    # phi_SR decays like erfc(alpha r) or erfc(r / 2 sigma_q), whichever is slower.
    slowest = alpha if sigma_q == 0 else min(alpha, 1.0 / (2.0 * sigma_q))
    r_cut = cut / slowest
    k_cut = 2.0 * alpha * cut

    wrapped = wrap_positions(positions, lattice)
    shifts = lattice_translations(lattice, r_cut, reach=1.0)
    real = real_space_sum(wrapped, charges, shifts, sigma_q, alpha, r_cut)
    recip = _reciprocal_space(wrapped, charges, lattice, alpha, k_cut)

    # Self term: the long-range kernel of a charge with itself, erf(alpha r)/r at r = 0.
    self_potential = -COULOMB_CONSTANT * _TWO_OVER_SQRT_PI * alpha * charges
    self_energy = 0.5 * float(np.dot(self_potential, charges))
    # Neutralising background for a net charge Q (see the module docstring).
    total = float(charges.sum())
    bg_factor = -math.pi * COULOMB_CONSTANT * (1.0 / alpha**2 - 4.0 * sigma_q**2) / volume
    bg_energy = 0.5 * bg_factor * total**2

    energy = real["energy"] + recip["energy"] + self_energy + bg_energy
    # dE/dstrain: the background scales as 1/V, so its derivative is -delta_ab E_bg.
    de_dstrain = real["de_dstrain"] + recip["de_dstrain"] - bg_energy * np.eye(3)
    stress = 0.5 * (de_dstrain + de_dstrain.T) / volume
    return {
        "energy": energy,
        "forces": real["forces"] + recip["forces"],
        "stress": voigt(stress),
        "stress_tensor": stress,
        "potential": real["potential"] + recip["potential"] + self_potential + bg_factor * total,
        "alpha": alpha,
        "r_cut": r_cut,
        "k_cut": k_cut,
    }


def direct_sum(positions, charges, *, sigma_q: float = 0.0) -> dict:
    """Coulomb energy of a finite (non-periodic) set of charges by the plain pair sum.

    E = (k_e / 2) sum_{i != j} q_i q_j phi(r_ij), phi = erf(r / 2 sigma_q) / r or 1/r.

    Args:
        positions: (N, 3) Å.
        charges: (N,) e.
        sigma_q: Å, Gaussian width, >= 0.

    Returns:
        dict with ``energy`` (eV), ``forces`` (N, 3) eV/Å and ``potential`` (N,) eV/e.

    Raises:
        ValueError: bad input or coincident point charges (``sigma_q`` = 0).
    """
    positions, charges = validate_charges(positions, charges)
    sigma_q = _validate_sigma(sigma_q)
    d = positions[None, :, :] - positions[:, None, :]  # d[i, j] = r_j - r_i
    r = np.linalg.norm(d, axis=-1)
    off = ~np.eye(len(charges), dtype=bool)
    ii, jj = np.nonzero(off)
    if sigma_q == 0.0:
        _check_not_coincident(r[ii, jj], ii, jj, None)
    phi, dphi_over_r = pair_kernel(r[ii, jj], sigma_q, alpha=None)
    qq = charges[ii] * charges[jj]
    forces = np.zeros_like(positions)
    # F_i = -dE/dr_i = sum_j q_i q_j phi'(r) (r_j - r_i) / r   (pairs (i,j) and (j,i) add).
    np.add.at(forces, ii, (COULOMB_CONSTANT * qq * dphi_over_r)[:, None] * d[ii, jj])
    potential = np.zeros(len(charges))
    np.add.at(potential, ii, COULOMB_CONSTANT * charges[jj] * phi)
    return {
        "energy": 0.5 * float(np.dot(potential, charges)),
        "forces": forces,
        "potential": potential,
    }


def pair_kernel(r: np.ndarray, sigma_q: float, alpha: float | None):
    """The pair kernel (short-range part if ``alpha`` is given) and its derivative over r.

    alpha None: phi(r) = erf(r / 2 sigma_q) / r (1/r for sigma_q = 0), the full kernel.
    alpha > 0: phi_SR(r) = [erfc(alpha r) - erfc(r / 2 sigma_q)] / r (erfc(alpha r)/r for
    point charges), written with erfc so that the tail is accurate to the last digit.

    Args:
        r: distances (any shape), Å; r = 0 is allowed when sigma_q > 0.

    Returns:
        ``(phi, phi'(r) / r)`` in 1/Å and 1/Å³, finite at r = 0 when sigma_q > 0.
    """
    r = np.asarray(r, dtype=np.float64)
    width = math.inf if sigma_q == 0 else 1.0 / (2.0 * sigma_q)
    if alpha is None:
        return _erf_over_r(r, width)
    phi, dphi = _erfc_over_r(r, alpha)
    if sigma_q > 0:
        p_b, d_b = _erfc_over_r(r, width)
        with np.errstate(invalid="ignore"):  # inf - inf at r = 0, replaced just below
            phi, dphi = phi - p_b, dphi - d_b
        # Near r = 0 each erfc term diverges; use the finite erf form there instead.
        small = r * max(alpha, width) < 1e-2
        if small.any():
            p_a, d_a = _erf_over_r(r[small], width)
            p_c, d_c = _erf_over_r(r[small], alpha)
            phi[small], dphi[small] = p_a - p_c, d_a - d_c
    return phi, dphi


def _erfc_over_r(r: np.ndarray, w: float):
    """erfc(w r)/r and (d/dr erfc(w r)/r) / r, for r > 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        value = erfc(w * r) / r
        deriv = (-_TWO_OVER_SQRT_PI * w * np.exp(-((w * r) ** 2)) - value) / r**2
    return value, deriv


def _erf_over_r(r: np.ndarray, w: float):
    """erf(w r)/r and (d/dr erf(w r)/r) / r, finite at r = 0; w = inf means 1/r."""
    if math.isinf(w):
        with np.errstate(divide="ignore"):
            return 1.0 / r, -1.0 / r**3
    x = w * r
    small = x < 1e-2
    rs = np.where(small, 1.0, r)
    value = np.where(small, 0.0, erf(w * rs) / rs)
    gauss = _TWO_OVER_SQRT_PI * w * np.exp(-((w * rs) ** 2))
    deriv = np.where(small, 0.0, (gauss - value) / rs**2)
    # Taylor series at small x (exact to double precision for x < 1e-2):
    # erf(x)/x = 2/sqrt(pi) (1 - x²/3 + x⁴/10 - x⁶/42 + x⁸/216).
    c = _TWO_OVER_SQRT_PI * w
    x2 = x**2
    value = np.where(small, c * (1 - x2 / 3 + x2**2 / 10 - x2**3 / 42 + x2**4 / 216), value)
    deriv = np.where(
        small, c * w**2 * (-2 / 3 + 2 * x2 / 5 - 3 * x2**2 / 21 + 4 * x2**3 / 108), deriv
    )
    return value, deriv


def real_space_sum(pos, q, shifts, sigma_q, alpha, r_cut) -> dict:
    """Sum of phi_SR over all pairs and images within r_cut (i = j home cell excluded).

    Args:
        pos: (N, 3) Å, wrapped so that every needed image is among ``shifts``.
        q: (N,) e.
        shifts: (S, 3) Å lattice translations, including the zero vector.
        sigma_q, alpha, r_cut: as in :func:`ewald_sum` (Å, 1/Å, Å).

    Returns:
        dict with ``energy`` (eV), ``forces`` (N, 3) eV/Å, ``potential`` (N,) eV/e and
        ``de_dstrain`` (3, 3) eV, the derivative of the energy with respect to strain.
    """
    n = len(q)
    zero = int(np.flatnonzero(~shifts.any(axis=1))[0])
    forces = np.zeros((n, 3))
    potential = np.zeros(n)
    de_dstrain = np.zeros((3, 3))
    block = max(1, _CHUNK // (n * len(shifts)))
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        # D[a, j, s] = r_j - r_i + T_s for i = rows[a].
        disp = pos[None, :, None, :] - pos[rows, None, None, :] + shifts[None, None]
        r = np.linalg.norm(disp, axis=-1)
        inside = r < r_cut
        inside[np.arange(len(rows)), rows, zero] = False  # the cloud's own self energy
        a, j, s = np.nonzero(inside)
        i = rows[a]
        dist = r[a, j, s]
        if sigma_q == 0.0:
            _check_not_coincident(dist, i, j, s)
        phi, dphi_over_r = pair_kernel(dist, sigma_q, alpha)
        vec = disp[a, j, s]
        weight = COULOMB_CONSTANT * q[i] * q[j] * dphi_over_r
        np.add.at(forces, i, weight[:, None] * vec)
        np.add.at(potential, i, COULOMB_CONSTANT * q[j] * phi)
        # Each unordered pair appears twice (from i and from j): factor 1/2.
        de_dstrain += 0.5 * np.einsum("p,pa,pb->ab", weight, vec, vec)
    return {
        "energy": 0.5 * float(np.dot(potential, q)),
        "forces": forces,
        "potential": potential,
        "de_dstrain": de_dstrain,
    }


def _reciprocal_space(pos, q, lattice, alpha, k_cut) -> dict:
    """Sum of phi_LR over k != 0 (half of k-space, times 2: k and -k are equal)."""
    volume = abs(np.linalg.det(lattice))
    kvecs = reciprocal_vectors(lattice, k_cut)
    n = len(q)
    forces = np.zeros((n, 3))
    potential = np.zeros(n)
    energy = 0.0
    de_dstrain = np.zeros((3, 3))
    pref = 2.0 * COULOMB_CONSTANT / volume  # 2 for the half space, 1/V of the transform
    block = max(1, _CHUNK // n)
    for start in range(0, len(kvecs), block):
        k = kvecs[start : start + block]
        k2 = np.einsum("ka,ka->k", k, k)
        # A(k) = 4 pi exp(-k²/4 alpha²) / k²: Fourier transform of erf(alpha r)/r.
        amp = 4.0 * math.pi * np.exp(-k2 / (4.0 * alpha**2)) / k2
        phase = k @ pos.T  # (K, N)
        cos, sin = np.cos(phase), np.sin(phase)
        s_re, s_im = cos @ q, sin @ q  # structure factor S(k) = sum_j q_j exp(i k.r_j)
        s2 = s_re**2 + s_im**2
        e_k = 0.5 * pref * amp * s2
        energy += float(e_k.sum())
        # phi_i = (k_e/V) sum_k A Re[S* exp(i k.r_i)]; F_i = (k_e/V) q_i sum_k A k Im[...].
        potential += pref * (amp * s_re) @ cos + pref * (amp * s_im) @ sin
        im_part = sin * s_re[:, None] - cos * s_im[:, None]  # (K, N)
        forces += pref * q[:, None] * ((amp[:, None] * im_part).T @ k)
        # Strain: k -> (1 - eps) k, V -> V (1 + tr eps), S(k) unchanged.
        w = e_k * 2.0 * (1.0 / k2 + 1.0 / (4.0 * alpha**2))
        de_dstrain += np.einsum("k,ka,kb->ab", w, k, k)
    de_dstrain -= energy * np.eye(3)
    return {"energy": energy, "forces": forces, "potential": potential, "de_dstrain": de_dstrain}


def lattice_translations(lattice: np.ndarray, r_cut: float, reach: float = 0.0) -> np.ndarray:
    """(S, 3) Å, lattice vectors n @ lattice that can reach within ``r_cut``.

    Includes every n with |n_a| <= floor(r_cut / h_a + reach) where h_a is the spacing of
    the lattice planes normal to the reciprocal vector a; ``reach`` = 1 covers pairs whose
    fractional separation lies in (-1, 1) (positions wrapped into the cell).
    """
    recip = np.linalg.inv(lattice).T  # rows b_a with a_a . b_b = delta_ab
    spacing = 1.0 / np.linalg.norm(recip, axis=1)
    n_max = np.floor(r_cut / spacing + reach).astype(int)
    ranges = [np.arange(-m, m + 1) for m in n_max]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid.astype(np.float64) @ lattice


def reciprocal_vectors(lattice: np.ndarray, k_cut: float) -> np.ndarray:
    """(K, 3) 1/Å, reciprocal vectors 0 < |k| < k_cut in one half space (k or -k, not both)."""
    recip = 2.0 * math.pi * np.linalg.inv(lattice).T
    m_max = np.floor(k_cut * np.linalg.norm(lattice, axis=1) / (2.0 * math.pi)).astype(int)
    ranges = [np.arange(-m, m + 1) for m in m_max]
    m = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    # Half space: first non-zero integer component positive.
    first = np.where(m[:, 0] != 0, m[:, 0], np.where(m[:, 1] != 0, m[:, 1], m[:, 2]))
    m = m[first > 0]
    k = m.astype(np.float64) @ recip
    return k[np.einsum("ka,ka->k", k, k) < k_cut**2]


def reduced_basis(cell: np.ndarray) -> np.ndarray:
    """A basis of the same lattice with short, nearly orthogonal vectors (greedy reduction).

    Repeatedly subtracts the nearest integer multiple of one vector from another until no
    vector gets shorter; the lattice (and so every lattice sum) is unchanged, only the
    number of images to visit drops for very skewed cells.
    """
    basis = np.array(cell, dtype=np.float64)
    for _ in range(100):
        changed = False
        for a in range(3):
            for b in range(3):
                if a == b:
                    continue
                m = round(float(basis[a] @ basis[b] / (basis[b] @ basis[b])))
                if m != 0:
                    candidate = basis[a] - m * basis[b]
                    if candidate @ candidate < basis[a] @ basis[a] * (1 - 1e-12):
                        basis[a] = candidate
                        changed = True
        if not changed:
            break
    if np.linalg.det(basis) < 0:
        basis = -basis
    return basis


def wrap_positions(positions: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """Positions moved by lattice vectors into the cell (fractional coordinates in [0, 1))."""
    frac = positions @ np.linalg.inv(lattice)
    return (frac - np.floor(frac)) @ lattice


def validate_charges(positions, charges) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert ``positions`` ((N, 3) finite) and ``charges`` ((N,) finite real)."""
    pos = np.asarray(positions)
    if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] == 0:
        raise ValueError(f"positions: expected shape (N, 3) with N >= 1, got {pos.shape}")
    if not np.issubdtype(pos.dtype, np.number) or np.iscomplexobj(pos):
        raise TypeError(f"positions: expected real numbers, got dtype {pos.dtype}")
    pos = pos.astype(np.float64)
    if not np.isfinite(pos).all():
        bad = np.argwhere(~np.isfinite(pos).all(axis=1)).ravel()
        raise ValueError(f"positions: expected finite values, got NaN/inf for atoms {bad}")
    q = np.asarray(charges)
    if q.shape != (len(pos),):
        raise ValueError(f"charges: expected shape ({len(pos)},), got {q.shape}")
    if q.dtype == bool or not np.issubdtype(q.dtype, np.number) or np.iscomplexobj(q):
        raise TypeError(f"charges: expected real numbers, got dtype {q.dtype}")
    q = q.astype(np.float64)
    if not np.isfinite(q).all():
        raise ValueError(f"charges: expected finite values, got {q[~np.isfinite(q)]}")
    return pos, q


def validate_cell(cell) -> np.ndarray:
    """Check ``cell``: (3, 3) finite with a non-zero volume; returns it as float64."""
    c = np.asarray(cell, dtype=np.float64)
    if c.shape != (3, 3):
        raise ValueError(f"cell: expected shape (3, 3), got {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError(f"cell: expected finite values, got {c.tolist()}")
    lengths = np.linalg.norm(c, axis=1)
    if lengths.min() == 0 or abs(np.linalg.det(c)) < 1e-10 * lengths.prod():
        raise ValueError(f"cell: expected a non-singular cell (volume > 0), got {c.tolist()}")
    return c


def _validate_sigma(sigma_q) -> float:
    sigma = float(sigma_q)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma_q: expected a finite width >= 0 Å, got {sigma_q}")
    return sigma


def _validate_alpha(alpha) -> float:
    value = float(alpha)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"alpha: expected a finite splitting parameter > 0 (1/Å), got {alpha}")
    return value


def _cut_factor(truncation: float) -> float:
    """x with erfc(x) ~ exp(-x²) = truncation (real space: alpha r_cut = x)."""
    if not 0 < truncation < 1:
        raise ValueError(f"truncation: expected a value in (0, 1), got {truncation}")
    return math.sqrt(-math.log(truncation))


def _check_not_coincident(dist, i, j, shift_index) -> None:
    close = np.flatnonzero(dist < _COINCIDENT)
    if len(close):
        p = close[0]
        where = "" if shift_index is None else " (or an image of one another)"
        raise ValueError(
            f"positions: point charges {int(i[p])} and {int(j[p])} coincide{where} "
            f"(distance {dist[p]:.3g} Å): their Coulomb energy is infinite; "
            "separate them or use sigma_q > 0"
        )
