"""Per-atom Coulomb potentials of one periodic cell: real space + k-space + background.

    E = sum_i q_i V_i,
    V_i = (1/2) sum_{j, n}' q_j k_e phi_SR(|r_j - r_i + n.cell|)      (real space, r < r_c)
        + (1/2) [k-space potential of the long-range kernel - self - background]

The real-space pairs come from a vesin neighbour list computed without gradients (indices
and integer cell shifts, with its own cutoff); the distances are recomputed from the
(possibly strained) positions and cell, so forces, stress and dE/dq flow through them.
"""

from __future__ import annotations

import numpy as np
import torch
import vesin

from .kspace import MeshP3M, MeshPME, SphericalEwald
from .potential import GaussianCoulombPotential
from .tuning import CoulombParameters

#: Two point charges closer than this (Å) are coincident: their energy is infinite.
COINCIDENT_DISTANCE = 1e-8


def real_space_pairs(
    positions: torch.Tensor, cell: torch.Tensor, pbc, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Half neighbour list (each pair once) within ``cutoff``, over all images.

    Args:
        positions: (N, 3) Å (values only are used).
        cell: (3, 3) Å (values only).
        pbc: three bools.
        cutoff: Å.

    Returns:
        ``(i, j, shifts)`` on the positions' device: int64 (P,), (P,) and float (P, 3)
        integer cell shifts, r_ij = r_j - r_i + shifts @ cell.
    """
    points = positions.detach().to("cpu", torch.float64).numpy()
    box = cell.detach().to("cpu", torch.float64).numpy()
    periodic = [bool(p) for p in pbc]
    if not any(periodic):
        box = np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    i, j, shifts = calculator.compute(points, box, periodic, "ijS")
    device = positions.device
    return (
        torch.as_tensor(i.astype(np.int64), device=device),
        torch.as_tensor(j.astype(np.int64), device=device),
        torch.as_tensor(shifts, dtype=positions.dtype, device=device),
    )


def pair_distances(
    positions: torch.Tensor,
    cell: torch.Tensor,
    i: torch.Tensor,
    j: torch.Tensor,
    shifts: torch.Tensor,
    *,
    sigma_q: float,
    structure: int,
) -> torch.Tensor:
    """Differentiable |r_j - r_i + shifts @ cell| (Å); rejects coincident point charges.

    Raises:
        ValueError: when ``sigma_q == 0`` and two atoms (or an atom and an image of
            another) are closer than ``COINCIDENT_DISTANCE``: naming both atoms (indices
            within structure ``structure``).
    """
    vectors = positions[j] - positions[i] + shifts @ cell
    distances = torch.linalg.norm(vectors, dim=1)
    if sigma_q == 0 and distances.numel() > 0:
        close = distances.detach() < COINCIDENT_DISTANCE
        if bool(close.any()):
            k = int(torch.nonzero(close)[0, 0])
            shift = [int(x) for x in shifts[k].tolist()]
            raise ValueError(
                f"positions: atoms {int(i[k])} and {int(j[k])} of structure {structure} "
                f"coincide (distance {float(distances[k].detach()):.3g} Å, cell shift {shift}); "
                "point charges (sigma_q = 0) at the same place have infinite energy"
            )
    return distances


def make_calculator(
    params: CoulombParameters, sigma_q: float, cell: torch.Tensor, analytic_kspace: bool = True
):
    """The torch-pme calculator for ``params`` on ``cell`` (its mesh shape is fixed here).

    ``analytic_kspace``: PME/P3M gradients from the forward mesh (:mod:`.mesh_potential`)
    instead of autograd through the interpolation (same values; ignored for Ewald).
    """
    potential = GaussianCoulombPotential(smearing=params.smearing, sigma_q=sigma_q)
    if params.method == "ewald":
        calculator = SphericalEwald(potential, k_cutoff=params.k_cutoff)
    else:
        shape = params.mesh_shape(cell.detach().to("cpu", torch.float64).numpy())
        kind = MeshPME if params.method == "pme" else MeshP3M
        calculator = kind(potential, shape, interpolation_nodes=params.interpolation_nodes)
        calculator.analytic_backward = bool(analytic_kspace)
    return calculator.to(cell.device)


def periodic_potentials(
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    params: CoulombParameters,
    *,
    sigma_q: float,
    real_space_pbc=(True, True, True),
    structure: int = 0,
    analytic_kspace: bool = True,
) -> torch.Tensor:
    """torch-pme per-atom potentials V_i (eV/e, E = sum q_i V_i) of one 3D-periodic cell.

    Args:
        positions: (N, 3) Å, any float dtype; need not be wrapped.
        cell: (3, 3) Å, nonsingular.
        charges: (N,) e.
        params: from :func:`~hybridpot.electrostatics.tuning.choose_parameters`.
        sigma_q: Gaussian width (Å).
        real_space_pbc: periodicity of the real-space neighbour list (a slab's internal
            cell is not periodic along its vacuum gap, which exceeds the cutoff).
        structure: index used in error messages.
        analytic_kspace: mesh gradients from the forward mesh (fast) instead of generic
            autograd through the interpolation (see :func:`make_calculator`).

    Returns:
        (N,) potentials, differentiable w.r.t. positions, cell and charges.
    """
    i, j, shifts = real_space_pairs(positions, cell, real_space_pbc, params.real_space_cutoff)
    distances = pair_distances(positions, cell, i, j, shifts, sigma_q=sigma_q, structure=structure)
    calculator = make_calculator(params, sigma_q, cell, analytic_kspace)
    potentials = calculator.forward(
        charges=charges[:, None],
        cell=cell,
        positions=positions,
        neighbor_indices=torch.stack([i, j], dim=1),
        neighbor_distances=distances,
    )
    return potentials[:, 0]
