"""Ewald / PME / P3M parameters from a target relative force error, in microseconds.

``accuracy`` is the target relative RMS force error, RMS|F - F_exact| / RMS|F_exact|.
No timing runs: the parameters come from error estimates (below), each a fit that bounds
the errors MEASURED against an exact Ewald sum, plus safety factors. All estimates are
written for the absolute RMS force error in units of the natural force scale

    F0 = k_e <q^2> / d^2,     d = (V / N)^(1/3)  (mean interparticle distance)

and an RMS force error is turned into a relative one by the exact RMS force of the
configuration, itself a multiple of F0: ~3.7 F0 for random ±1 charges, ~1 F0 for rock
salt with 0.6 Å random displacements, ~0.46 F0 with 0.3 Å, ~0.148 F0 with 0.1 Å, ~0.11 F0
for CsCl with 0.1 Å (F -> 0 for a perfect crystal, where only the absolute error is
meaningful). The absolute errors vary much less between cells than the forces, so the
RELATIVE error is largest for near-perfect crystals, and they set the parameters: each
part (real space, mesh) may have the absolute error ``accuracy * FORCE_FRACTION * F0 /
SAFETY`` with FORCE_FRACTION = 0.15 and SAFETY = 1.2, times the weakening of the forces
by Gaussian charges (``gaussian_force_factor``), and the mesh constants are chosen so
that this bounds the measured relative error of every 0.1 Å crystal of the sweep below.
The real-space part gets a further REAL_SPACE_MARGIN (10x) and the Ewald k-space part
EWALD_MARGIN: their truncation errors are systematic in the energy and the stress (all
left-out terms correlated), not only random in the forces. With the real-space part 10x
below the mesh part, the two add in quadrature to 1.005x the mesh part, so the mesh
error alone fills the budget.

Measured (benchmarks/pme_accuracy.py: float64, PME and P3M, sigma_q 0 and 1 Å, N =
250-8,000, targets 1e-3, 1e-4, 1e-5; 21 cells): measured / requested up to 0.75, highest
on CsCl with 0.1 Å displacements (0.14-0.75), 0.07-0.35 on the other 0.1 Å crystals
(rock salt cubic and triclinic, NaCl's primitive cell, fluorite, zincblende, wurtzite),
0.04-0.13 on rock salt at 0.3 Å, 0.02-0.1 on random, charged and sparse cells. The
spread is what parameters knowing only V, N and sigma_q must leave: a perfect CsCl
lattice already has mesh force errors of ~0.7x the budget when the mesh is
incommensurate with it (NaCl's are ~50x smaller), so a 0.1 Å CsCl crystal needs ~3x
the accuracy that rock salt needs; and an ordered crystal's error jumps by up to 2x
between neighbouring mesh sizes. Calibrated on rock salt alone (PME c = 0.042, P3M c =
0.0018), rock salt landed at 0.24-0.64 but CsCl at 0.1 Å reached 1.9x (PME) and 2.9x
(P3M) the target, fluorite and primitive NaCl 1.2x (P3M).

Real space (Kolafa & Perram, Mol. Sim. 9, 351 (1992); s = torch-pme smearing):

    dF_real / F0 = 2 sqrt(d / r_c) exp(-r_c^2 / (2 s^2))      (measured: 0.2-1.3x this)

Mesh (PME with Lagrange interpolation, P3M with B-splines; p interpolation nodes, h the
largest mesh step |a_i| / n_i along a lattice vector, after rounding to FFT sizes):

    dF_mesh / F0 = c_p (d / s)^a_p (h / s)^e_p                (MESH_ERROR table)

For the default orders (PME p = 7, P3M p = 5) e_p and a_p are fits to the mesh errors
measured alone (converged real space) on rock salt with 0.1 Å displacements, cubic and
triclinic (s = 1.2-2.2 Å, h/s = 0.19-0.5, d = 2.82 Å): PME e = 6.31, a = 1; P3M e = 4.8,
a = 2.5 (P3M's error on an ordered crystal falls faster with s than the (d/s)^1 of
uncorrelated charges: the kernel exp(-s^2 k^2 / 2) suppresses the aliases of the
crystal's Bragg peaks). c_p is the largest ratio of measured to modelled relative error
over the 0.1 Å crystals (CsCl sets it: 2.6x rock salt's envelope for PME, 3.7x for P3M)
times the rock-salt envelope: PME c = 0.10, P3M c = 0.0060. The other orders keep the
older envelopes of uncorrelated-charge errors (a = 1; h/s = 0.12-0.5, s = 1.0-1.8 Å,
d = 2.8-6 Å), conservative on every cell measured. The problem is scale-free (lengths
times lambda: forces / lambda^2, same relative errors for s, r_c, h times lambda), so the
fits carry over to any density through d.

Torch-pme's Lagrange PME with an even number of nodes is markedly less accurate than
with the odd number below it, so automatic choices use p = 7 (PME) and p = 5 (P3M), the
most accurate orders; they need the coarsest meshes.

Ewald (same derivation as Kolafa-Perram, for the k-vectors left out):

    dF_k / F0 = sqrt(d / s) sqrt(4 sqrt(pi) erfc(s k_cut))

Real-space cutoff (density-based, balancing the two halves of the work): the real-space
work grows as N rho r_c^3 (pairs), the mesh work as the number of mesh points
V / h^3 = N / (rho h^3); with r_c = x_r s and h = x_k s (x_r, x_k fixed by the targets
above) the sum is smallest at

    r_c = COST_BALANCE * d * sqrt(x_r / x_k)

(COST_BALANCE from timings; in rock salt it gives ~105 neighbours within r_c at 1e-3
and ~380 at 1e-5, r_c = 8.3 and 12.7 Å). There is
no cap at half the cell: the neighbour list handles any cutoff, and a short cutoff in a
small cell would only force a finer mesh. The Ewald sum (small cells) uses the cutoff
holding ``EWALD_NEIGHBORS`` atoms. Where the Gaussian width needs it (s must exceed
sqrt(2) sigma_q), s and the cutoff are raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import erfcinv

#: Methods that sum a periodic cell.
PERIODIC_METHODS = ("pme", "p3m", "ewald")
#: Parameter names a caller may fix (everything else is chosen from ``accuracy``).
OVERRIDES = (
    "smearing",
    "real_space_cutoff",
    "mesh_spacing",
    "interpolation_nodes",
    "lr_wavelength",
    "slab_gap",
)

#: Exact RMS force, in units of F0, of the configurations whose RELATIVE error is the
#: largest at given parameters: near-perfect crystals (0.1 Å random displacements: rock
#: salt 0.148, CsCl 0.11-0.12, fluorite 0.16-0.17). Nearer a perfect crystal the forces
#: vanish and only the absolute error (accuracy * FORCE_FRACTION * F0) is meaningful.
FORCE_FRACTION = 0.15
#: Margin on every estimate (the fits below are upper envelopes; mesh sizes are rounded up).
SAFETY = 1.2
#: Constant of the mesh / real-space balance of the default cutoff (module docstring).
COST_BALANCE = 0.76
#: Atoms inside the default real-space cutoff sphere of the Ewald sum.
EWALD_NEIGHBORS = 120.0
#: s >= this times sqrt(2) sigma_q when s is chosen automatically.
SIGMA_MARGIN = 1.05
#: The real-space force error target is this much tighter than the k-space one: the
#: truncated real-space tail is a systematic error of the energy and of the stress (the
#: stress error was 3-8x the relative force error on rock salt, ~100% from the cutoff),
#: while its effect on the forces is random; 10x costs ~8% in r_c / s.
REAL_SPACE_MARGIN = 10.0
#: The Ewald k-space error target is this much tighter than the force target: truncating
#: the k-sum biases the energy and stress (all left-out terms have one sign), while the
#: force error is random; extra k-vectors are cheap where Ewald is used (small cells).
EWALD_MARGIN = 10.0
#: Largest mesh (points) we build before refusing.
#: (2^30: a million-ion cell at 1e-4 needs ~3e8 points, ~5 GB of meshes in float32.)
MAX_MESH_POINTS = 2**30

#: (c_p, e_p, a_p) of dF_mesh / F0 = c_p (d/s)^a_p (h/s)^e_p (module docstring). For
#: the default orders (PME p = 7, P3M p = 5), e_p and a_p are fits on rock salt with
#: 0.1 Å displacements and c_p bounds the measured relative error of every 0.1 Å crystal
#: of benchmarks/pme_accuracy.py (CsCl sets it); the other orders are the older, looser
#: envelopes of uncorrelated charges (a_p = 1). P3M with p = 1 (nearest grid point) is
#: excluded: its weights do not depend on the positions, so autograd gives no k-space
#: forces at all.
MESH_ERROR = {
    "pme": {
        3: (0.33, 2.28, 1.0),
        4: (0.43, 3.0, 1.0),
        5: (0.152, 4.33, 1.0),
        6: (0.26, 4.9, 1.0),
        7: (0.10, 6.31, 1.0),
    },
    "p3m": {
        2: (3.0, 1.0, 1.0),
        3: (0.132, 2.38, 1.0),
        4: (0.0605, 3.3, 1.0),
        5: (0.0060, 4.8, 2.5),
    },
}
#: Interpolation nodes used when not overridden.
DEFAULT_NODES = {"pme": 7, "p3m": 5}
#: Prime factors allowed in mesh sizes (fast FFTs; torch-pme accepts any size).
FFT_PRIMES = (2, 3, 5)


@dataclass(frozen=True)
class CoulombParameters:
    """Numerical parameters of one periodic (or slab) Coulomb sum.

    Attributes:
        method: ``"pme"``, ``"p3m"`` or ``"ewald"``.
        smearing: Ewald split length s (Å); alpha = 1 / (sqrt(2) s).
        real_space_cutoff: Å.
        mesh_spacing: Å, largest mesh step |a_i| / n_i along any lattice vector
            (PME/P3M), else None.
        interpolation_nodes: per axis (PME 3-7, P3M 1-5), else None.
        k_cutoff: 1/Å, largest |k| of the Ewald sum, else None.
    """

    method: str
    smearing: float
    real_space_cutoff: float
    mesh_spacing: float | None = None
    interpolation_nodes: int | None = None
    k_cutoff: float | None = None

    def mesh_shape(self, cell: np.ndarray) -> tuple[int, int, int]:
        """Mesh points along the three rows of ``cell`` (Å): FFT-friendly sizes >= p.

        Raises:
            ValueError: if the mesh would exceed ``MAX_MESH_POINTS``.
        """
        lengths = np.linalg.norm(np.asarray(cell, dtype=np.float64), axis=1)
        shape = tuple(
            fft_size(max(math.ceil(length / self.mesh_spacing), self.interpolation_nodes))
            for length in lengths
        )
        if math.prod(shape) > MAX_MESH_POINTS:
            raise ValueError(
                f"the {self.method} mesh would have {shape} = {math.prod(shape):.3g} points "
                f"(limit {MAX_MESH_POINTS:.3g}); loosen accuracy or set a larger "
                f"mesh_spacing/real_space_cutoff"
            )
        return shape


def validate_overrides(overrides: dict, method: str) -> dict:
    """Check names, types and ranges of explicit parameter overrides.

    Args:
        overrides: keyword arguments given by the user (None values are dropped).
        method: ``"pme"``, ``"p3m"``, ``"ewald"`` or ``"direct"``.

    Returns:
        A new dict with float (int for ``interpolation_nodes``) values.

    Raises:
        TypeError: an unknown name or a value that is not a number.
        ValueError: an out-of-range value.
    """
    clean = {}
    for name, value in overrides.items():
        if name not in OVERRIDES:
            raise TypeError(f"unknown parameter {name!r}; the overrides are {OVERRIDES}")
        if value is None:
            continue
        if name == "interpolation_nodes":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"interpolation_nodes must be an integer, got {value!r}")
            allowed = {"pme": range(3, 8), "p3m": range(2, 6)}.get(method, range(2, 8))
            if int(value) not in allowed:
                raise ValueError(
                    f"interpolation_nodes for method {method!r} must be in "
                    f"{allowed.start}..{allowed.stop - 1}, got {value!r}"
                )
            clean[name] = int(value)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number (Å), got {type(value).__name__}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite length in Å, got {value!r}")
        clean[name] = float(value)
    return clean


def fft_size(n: int) -> int:
    """The smallest integer >= n whose prime factors are all 2, 3 or 5."""
    m = max(int(n), 1)
    while True:
        k = m
        for p in FFT_PRIMES:
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def real_space_error(d: float, cutoff: float, smearing: float) -> float:
    """Kolafa-Perram RMS real-space force error in units of F0 (see module docstring)."""
    return 2.0 * math.sqrt(d / cutoff) * math.exp(-(cutoff**2) / (2.0 * smearing**2))


def mesh_error(method: str, nodes: int, d: float, smearing: float, spacing: float) -> float:
    """Fitted RMS mesh force error (PME/P3M) in units of F0."""
    c, e, a = MESH_ERROR[method][nodes]
    return c * (d / smearing) ** a * (spacing / smearing) ** e


def ewald_kspace_error(d: float, smearing: float, k_cutoff: float) -> float:
    """RMS force error of the k-vectors beyond ``k_cutoff``, in units of F0."""
    tail = 4.0 * math.sqrt(math.pi) * math.erfc(smearing * k_cutoff)
    return math.sqrt(d / smearing) * math.sqrt(tail)


def _cutoff_ratio(d: float, cutoff: float, target: float) -> float:
    """r_c / s that makes the real-space error equal ``target / REAL_SPACE_MARGIN``."""
    real_target = target / REAL_SPACE_MARGIN
    log_term = math.log(max(2.0 * math.sqrt(d / cutoff) / real_target, 1.0 + 1e-12))
    return math.sqrt(2.0 * log_term)


def _mesh_ratio(method: str, nodes: int, d: float, smearing: float, target: float) -> float:
    """h / s that makes the mesh error equal ``target`` (units of F0)."""
    c, e, a = MESH_ERROR[method][nodes]
    return (target / (c * (d / smearing) ** a)) ** (1.0 / e)


def _default_cutoff(d: float, target: float, method: str, nodes: int | None) -> float:
    """Density-based real-space cutoff (Å) balancing real-space and mesh work."""
    if method == "ewald":
        return d * (3.0 * EWALD_NEIGHBORS / (4.0 * math.pi)) ** (1.0 / 3.0)
    cutoff = 3.0 * d
    for _ in range(3):  # x_r and x_k depend weakly on the cutoff: a few fixed-point steps
        x_r = _cutoff_ratio(d, cutoff, target)
        x_k = _mesh_ratio(method, nodes, d, cutoff / x_r, target)
        cutoff = COST_BALANCE * d * math.sqrt(x_r / x_k)
    return cutoff


def gaussian_force_factor(d: float, sigma_q: float) -> float:
    """Force between two Gaussian charges at distance d relative to point charges.

    |d/dr erf(r/w)/r| r^2 at r = d, w = 2 sigma_q: erf(x) - 2x exp(-x^2)/sqrt(pi),
    x = d / w (1 for point charges; ~0.74 for d = 2.8 Å, sigma_q = 1 Å). Wide Gaussians
    weaken the forces, so the same relative accuracy needs a smaller absolute error.
    """
    if sigma_q <= 0:
        return 1.0
    x = d / (2.0 * sigma_q)
    return math.erf(x) - 2.0 * x * math.exp(-x * x) / math.sqrt(math.pi)


def error_target(accuracy: float, d: float = 1.0, sigma_q: float = 0.0) -> float:
    """Allowed RMS force error of each of the two parts (real, reciprocal), units of F0.

    Args:
        accuracy: target relative RMS force error.
        d: mean interparticle distance (Å), for the Gaussian force factor.
        sigma_q: Gaussian charge width (Å).
    """
    fraction = FORCE_FRACTION * gaussian_force_factor(d, sigma_q)
    return accuracy * fraction / SAFETY


def choose_parameters(
    volume: float,
    n_atoms: int,
    *,
    method: str,
    accuracy: float,
    sigma_q: float = 0.0,
    overrides: dict | None = None,
) -> CoulombParameters:
    """Parameters meeting ``accuracy`` for N atoms in ``volume`` (model: module docstring).

    Args:
        volume: Å^3 occupied by the atoms (the cell volume; for a slab, area times
            thickness, not the vacuum).
        n_atoms: N >= 1.
        method: ``"pme"``, ``"p3m"`` or ``"ewald"``.
        accuracy: target relative RMS force error, in (0, 1).
        sigma_q: Gaussian charge width (Å), >= 0.
        overrides: validated explicit values (:func:`validate_overrides`); those given
            are used as they are and the others are chosen around them.

    Returns:
        :class:`CoulombParameters` (the mesh shape follows from the cell:
        :meth:`CoulombParameters.mesh_shape`).
    """
    overrides = overrides or {}
    d = (volume / n_atoms) ** (1.0 / 3.0)
    target = error_target(accuracy, d, sigma_q)
    s_min = math.sqrt(2.0) * sigma_q

    smearing = overrides.get("smearing")
    cutoff = overrides.get("real_space_cutoff")
    if smearing is not None and smearing <= s_min:
        raise ValueError(
            f"smearing must be > sqrt(2) * sigma_q = {s_min:.6g} Å for Gaussian charges "
            f"of width sigma_q = {sigma_q} Å, got {smearing!r}"
        )
    nodes = overrides.get("interpolation_nodes", DEFAULT_NODES.get(method))
    if cutoff is None:
        density_cutoff = _default_cutoff(d, target, method, nodes)
        if smearing is not None:
            # The cutoff that makes the given smearing meet the target: r_c = x(r_c) s.
            cutoff = smearing * _cutoff_ratio(d, density_cutoff, target)
            cutoff = smearing * _cutoff_ratio(d, cutoff, target)
        else:
            cutoff = density_cutoff
            ratio = _cutoff_ratio(d, cutoff, target)
            smearing = cutoff / ratio
            if smearing < SIGMA_MARGIN * s_min:
                # Wide Gaussians: the split cannot be narrower than the charges.
                smearing = SIGMA_MARGIN * s_min
                cutoff = smearing * ratio
    elif smearing is None:
        smearing = cutoff / _cutoff_ratio(d, cutoff, target)
        if smearing <= s_min:
            raise ValueError(
                f"real_space_cutoff {cutoff:.6g} Å is too short for Gaussian charges of "
                f"width sigma_q = {sigma_q} Å at accuracy {accuracy:g}: the split length "
                f"it allows ({smearing:.4g} Å) must exceed sqrt(2) sigma_q = {s_min:.4g} Å"
            )

    if method == "ewald":
        if "lr_wavelength" in overrides:
            # Keep every k whose wavelength 2 pi / |k| is >= lr_wavelength.
            k_cutoff = 2.0 * math.pi / overrides["lr_wavelength"]
        else:
            # Solve ewald_kspace_error = target / EWALD_MARGIN for k:
            # erfc(s k) = (target / margin)^2 s / (4 sqrt(pi) d).
            tight = target / EWALD_MARGIN
            arg = min(tight**2 * smearing / (4.0 * math.sqrt(math.pi) * d), 1.0)
            k_cutoff = float(erfcinv(arg)) / smearing
        return CoulombParameters(method, float(smearing), float(cutoff), k_cutoff=k_cutoff)
    if method not in ("pme", "p3m"):
        raise ValueError(f"method must be one of {PERIODIC_METHODS}, got {method!r}")
    if "mesh_spacing" in overrides:
        spacing = overrides["mesh_spacing"]
    else:
        spacing = smearing * _mesh_ratio(method, nodes, d, smearing, target)
    return CoulombParameters(
        method,
        float(smearing),
        float(cutoff),
        mesh_spacing=float(spacing),
        interpolation_nodes=int(nodes),
    )
