"""The Ewald k-space sum and the corrections shared by every k-space method.

- the k-space potential becomes the per-atom V_i through
  :func:`~.potential.long_range_potential` (minus the self term, minus the neutralising
  background, half of the double-counted pairs), the same function the batched mesh sum
  (:mod:`.batched`) uses.
- :class:`SphericalEwald` (torch-pme's ``EwaldCalculator``) sums over the half sphere
  |k| <= k_cut (k and -k give the same term), exact in the cutoff and half the work of
  torch-pme's full box of k-vectors. Each structure has its own k-vectors, so the Ewald
  method runs structure by structure (it is for small cells; PME is the default).

The mesh methods (PME, P3M) live in :mod:`.batched` (filters, one batched mesh per group
of structures) and :mod:`.mesh_potential` (assignment, FFT, interpolation, backward).
"""

from __future__ import annotations

import math

import torch
from torchpme import EwaldCalculator

from .potential import long_range_potential

# Largest (k-vectors x atoms) matrix the Ewald sum may build (float elements): several
# such matrices are kept for the backward pass.
MAX_EWALD_ELEMENTS = 30_000_000


def half_sphere_miller_indices(cell: torch.Tensor, k_cutoff: float) -> torch.Tensor:
    """Integer m (K, 3) with 0 < |m @ B| <= k_cutoff, one of each pair +-m.

    Args:
        cell: (3, 3) Å (rows are lattice vectors); only its value is used.
        k_cutoff: 1/Å.

    Returns:
        (K, 3) int64 on the cell's device; k = 2 pi m @ inv(cell).T.
    """
    cell64 = cell.detach().to(torch.float64).cpu()
    recip = 2 * math.pi * torch.linalg.inv(cell64).T
    # |k . a_i| = 2 pi |m_i| <= |k| |a_i| bounds each index.
    bounds = torch.ceil(k_cutoff * torch.linalg.norm(cell64, dim=1) / (2 * math.pi)).long()
    ranges = [torch.arange(-int(b), int(b) + 1) for b in bounds]
    m = torch.stack(torch.meshgrid(*ranges, indexing="ij"), dim=-1).reshape(-1, 3)
    # Half space: first nonzero index positive (drops m = 0 and one of each +-m pair).
    first = torch.where(m[:, 0] != 0, m[:, 0], torch.where(m[:, 1] != 0, m[:, 1], m[:, 2]))
    k2 = ((m.double() @ recip) ** 2).sum(dim=1)
    keep = (first > 0) & (k2 <= k_cutoff**2)
    return m[keep].to(cell.device)


class SphericalEwald(EwaldCalculator):
    """Ewald sum over the half sphere |k| <= ``k_cutoff`` (1/Å).

    Args:
        potential: a :class:`~hybridpot.electrostatics.potential.GaussianCoulombPotential`.
        k_cutoff: reciprocal-space cutoff (1/Å), > 0.
    """

    def __init__(self, potential, k_cutoff: float):
        if not k_cutoff > 0:
            raise ValueError(f"k_cutoff must be > 0 1/Å, got {k_cutoff!r}")
        # torch-pme's own k-grid is not used; its wavelength argument only has to be valid.
        super().__init__(potential, lr_wavelength=math.pi / k_cutoff, full_neighbor_list=False)
        self.k_cutoff = float(k_cutoff)

    def _compute_kspace(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: torch.Tensor | None = None,
        kvectors: torch.Tensor | None = None,
        node_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        miller = half_sphere_miller_indices(cell, self.k_cutoff)
        n_elements = miller.shape[0] * positions.shape[0]
        if n_elements > MAX_EWALD_ELEMENTS:
            raise ValueError(
                f"the Ewald sum would need {miller.shape[0]} k-vectors x "
                f"{positions.shape[0]} atoms = {n_elements:.3g} matrix elements "
                f"(limit {MAX_EWALD_ELEMENTS:.3g}); use method='pme' or a looser accuracy"
            )
        # k depends differentiably on the (strained) cell: k = 2 pi m inv(cell)^T.
        kvecs = 2 * torch.pi * miller.to(cell.dtype) @ torch.linalg.inv(cell).T
        kernel = self.potential.lr_from_k_sq((kvecs**2).sum(dim=1))  # (K,)
        phase = kvecs @ positions.T  # (K, N)
        cos, sin = torch.cos(phase), torch.sin(phase)
        # Structure factor S(k) = sum_j q_j exp(i k.r_j); the potential of the smooth
        # charges at r_i is (4 pi / V) sum_k exp(-s^2 k^2/2)/k^2 Re[exp(-i k.r_i) S(k)],
        # and the half sphere counts each +-k pair once: factor 2.
        s_cos = cos @ charges  # (K, 1)
        s_sin = sin @ charges
        volume = torch.abs(torch.linalg.det(cell))
        potential_lr = 2.0 * (cos.T @ (kernel[:, None] * s_cos) + sin.T @ (kernel[:, None] * s_sin))
        # The kernel carries the default prefactor k_e, as the shared corrections assume.
        potential = self.potential
        return long_range_potential(
            potential_lr / volume,
            charges,
            potential.smearing,
            potential.sigma_q,
            charges.sum(dim=0),
            volume,
        )
