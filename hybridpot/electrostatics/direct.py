"""Direct pair sum for non-periodic structures (molecules, clusters).

    E = sum_{i<j} k_e q_i q_j phi(r_ij),   phi(r) = erf(r / (2 sigma_q)) / r  (1/r if 0)

Each atom gets half of each of its pair terms. Cost and memory are O(N^2).
"""

from __future__ import annotations

import torch

from ..keys import COULOMB_CONSTANT
from .periodic import pair_distances
from .potential import gaussian_pair_kernel


def direct_energies(
    positions: torch.Tensor, charges: torch.Tensor, *, sigma_q: float, structure: int = 0
) -> torch.Tensor:
    """Per-atom Coulomb energies (eV) of an isolated structure.

    Args:
        positions: (N, 3) Å.
        charges: (N,) e.
        sigma_q: Gaussian charge width (Å), 0 for point charges.
        structure: index used in error messages.

    Returns:
        (N,) eV summing to the pair energy; differentiable w.r.t. positions and charges.

    Raises:
        ValueError: coincident point charges (``sigma_q == 0``), naming both atoms.
    """
    n = positions.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=positions.device)
    zero_shifts = torch.zeros((i.shape[0], 3), dtype=positions.dtype, device=positions.device)
    no_cell = torch.zeros((3, 3), dtype=positions.dtype, device=positions.device)
    distances = pair_distances(
        positions, no_cell, i, j, zero_shifts, sigma_q=sigma_q, structure=structure
    )
    pair_energy = (
        COULOMB_CONSTANT * charges[i] * charges[j] * gaussian_pair_kernel(distances, sigma_q)
    )
    energies = torch.zeros_like(charges)
    energies = energies.index_add(0, i, 0.5 * pair_energy)
    return energies.index_add(0, j, 0.5 * pair_energy)
