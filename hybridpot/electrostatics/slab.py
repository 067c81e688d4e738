"""Slabs (two periodic axes): a 3D sum with a vacuum gap plus the slab correction.

The slab (periodic along the two cell rows a1, a2 with pbc True; the third row, with pbc
False, must be orthogonal to both or zero) is put in an internal 3D cell whose third row
is n L, with n = (a1 x a2)/|a1 x a2| the unit normal and L = thickness + gap (thickness
rounded up to THICKNESS_QUANTUM). The 3D Ewald/PME sum of that cell is then corrected to
the 2D-periodic result
(Yeh & Berkowitz, J. Chem. Phys. 111, 3155 (1999), with the charged-slab terms of
Ballenegger, Arnold & Cerda, J. Chem. Phys. 131, 094107 (2009)):

    E_corr = (2 pi k_e / V) [M_n^2 - Q sum_i q_i (z_i^2 + sigma_q^2) - Q^2 L^2 / 12],
    z_i = r_i . n,  M_n = sum_i q_i z_i,  Q = sum_i q_i,  V = |a1 x a2| L,

(the sigma_q^2 is the spread along n of a Gaussian charge of width sigma_q: the second
moment of its density; without it a charged slab of Gaussian charges depended on L).

This removes exactly the k_parallel = 0 (planar average) difference between the 3D
periodic and the 2D-periodic sums; what remains is the interaction with the periodic
replicas through in-plane Fourier components k_par != 0, which decays as
exp(-k_min gap) with k_min = 2 pi |v_min| / A the smallest in-plane reciprocal vector
(v_min the shortest in-plane lattice vector, A the area). The gap is chosen so that this
error is below the accuracy target:

    gap = max(r_c, ln(C sqrt(N) d^2 / (A target)) / k_min),   C = GAP_CONSTANT

(the replica field at an atom, relative to F0 = k_e <q^2>/d^2, for uncorrelated charges;
target as in ``tuning``). The correction is computed along n, so any orientation of the
slab works (torch-pme's own ``pbc_correction`` assumes the normal is a Cartesian axis).
"""

from __future__ import annotations

import math

import numpy as np

from .tuning import error_target

#: Constant C of the gap rule (module docstring). With C = 30 the measured force errors
#: against the exact 2D sum were 100-2000x below target (random and rock-salt slabs,
#: 1e-3 and 1e-5); C = 5 keeps a margin of >= ~15x.
GAP_CONSTANT = 5.0
#: Å; the slab thickness is rounded up to a multiple of this before it sets the density
#: and the internal cell length, so that the numerical parameters (and with them the
#: tiny L-dependence of the result) stay constant while atoms move, instead of changing
#: with every step: the energy stays one smooth function of the positions between
#: (rare) steps of the rounded thickness.
THICKNESS_QUANTUM = 1.0
#: Relative tolerance on |cos| between the vacuum row and the periodic rows.
ORTHOGONALITY_TOLERANCE = 1e-6


def slab_axis(pbc) -> int:
    """Index of the single non-periodic axis of ``pbc`` (three bools, exactly one False)."""
    flags = [bool(p) for p in pbc]
    if flags.count(False) != 1:
        raise ValueError(f"pbc: a slab needs exactly one non-periodic axis, got {flags}")
    return flags.index(False)


def validate_slab_cell(cell: np.ndarray, axis: int, structure: int = 0) -> None:
    """Check that the periodic rows span a plane and the vacuum row is orthogonal (or 0).

    Args:
        cell: (3, 3) Å, float64 values.
        axis: the non-periodic row.
        structure: index used in messages.

    Raises:
        ValueError: naming the offending rows.
    """
    rows = [r for r in range(3) if r != axis]
    a1, a2, a3 = cell[rows[0]], cell[rows[1]], cell[axis]
    n1, n2, n3 = (float(np.linalg.norm(v)) for v in (a1, a2, a3))
    area = float(np.linalg.norm(np.cross(a1, a2)))
    if n1 == 0 or n2 == 0 or not area > 1e-10 * n1 * n2:
        raise ValueError(
            f"cell: the periodic rows {rows} of slab structure {structure} must be "
            f"non-zero and not parallel (area {area:.3g} Å^2), got {cell[rows].tolist()}"
        )
    if n3 > 0:
        cos = max(abs(float(a3 @ a1)) / (n3 * n1), abs(float(a3 @ a2)) / (n3 * n2))
        if cos > ORTHOGONALITY_TOLERANCE:
            raise ValueError(
                f"cell: the non-periodic row {axis} of slab structure {structure} must be "
                f"orthogonal to the periodic rows {rows} (or zero), |cos angle| = {cos:.3g}"
            )


def shortest_plane_vector(a1: np.ndarray, a2: np.ndarray) -> float:
    """Length (Å) of the shortest non-zero lattice vector of the 2D lattice (a1, a2)."""
    # Lagrange-Gauss reduction: repeatedly subtract the best multiple of the shorter.
    u, v = np.array(a1, dtype=np.float64), np.array(a2, dtype=np.float64)
    for _ in range(100):
        if u @ u > v @ v:
            u, v = v, u
        m = round(float(u @ v) / float(u @ u))
        if m == 0:
            break
        v = v - m * u
    return float(min(np.linalg.norm(u), np.linalg.norm(v)))


def choose_gap(
    a1: np.ndarray,
    a2: np.ndarray,
    n_atoms: int,
    d: float,
    accuracy: float,
    cutoff: float,
    sigma_q: float = 0.0,
) -> float:
    """Vacuum gap (Å) that keeps the replica error below the target (module docstring)."""
    area = float(np.linalg.norm(np.cross(a1, a2)))
    k_min = 2.0 * math.pi * shortest_plane_vector(a1, a2) / area
    target = error_target(accuracy, d, sigma_q)
    ratio = GAP_CONSTANT * math.sqrt(n_atoms) * d**2 / (area * target)
    return max(cutoff, math.log(max(ratio, 1.0)) / k_min)


def slab_geometry(positions: np.ndarray, cell: np.ndarray, axis: int) -> dict:
    """Plain-number slab geometry: periodic rows, area, thickness, density length d (Å).

    The thickness t is rounded up to a multiple of ``THICKNESS_QUANTUM``;
    d = max((A t / N)^(1/3), sqrt(A / N)) is the mean distance between atoms of the slab
    (the second form for a monolayer).
    """
    rows = [r for r in range(3) if r != axis]
    a1, a2 = cell[rows[0]], cell[rows[1]]
    cross = np.cross(a1, a2)
    area = float(np.linalg.norm(cross))
    normal = cross / area
    z = positions @ normal
    thickness = math.ceil(float(z.max() - z.min()) / THICKNESS_QUANTUM) * THICKNESS_QUANTUM
    n = len(positions)
    d = max((area * thickness / n) ** (1.0 / 3.0), math.sqrt(area / n))
    return {"a1": a1, "a2": a2, "area": area, "thickness": thickness, "d": d}
