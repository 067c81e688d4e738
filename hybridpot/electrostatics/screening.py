"""The range split between the network and the charges: Coulomb screened inside the cutoff.

With ``coulomb_split="cutoff"`` the long-range energy is the Coulomb energy of the
charges minus the part of every pair closer than the network's cutoff r_c, removed
smoothly:

    E_LR = E_coulomb(q) - k_e sum_(i<j, r_ij < r_c) q_i q_j phi(r_ij) u(r_ij / r_c)

with phi the pair kernel of the charges (erf(r / (2 sigma_q)) / r for Gaussians of width
sigma_q, 1/r for point charges) and u the network's polynomial envelope (u(0) = 1; u, u'
and u'' vanish at r_c). So pairs beyond r_c interact by the exact Coulomb law (the charges
own the long range), pairs inside r_c by phi(r) (1 - u(r / r_c)), which falls to zero
like (r / r_c)^p as r -> 0 (the network owns the short range: it does not have to cancel
the large Coulomb energy of bonded neighbours, e.g. an O-H pair of a water molecule).

The correction runs over the network's own edges (the full, directed neighbour list:
each pair twice, hence the factor 1/2 per edge), so it costs one pass over the edges and
its forces and stress follow by autograd from the (strained) edge vectors. Periodic
images inside r_c are edges like any other neighbour, so the same formula holds for
molecules, slabs and bulk cells.
"""

from __future__ import annotations

import torch

from ..keys import COULOMB_CONSTANT
from ..nn.radial import polynomial_envelope
from .potential import pair_kernel


def screening_pair_energy(
    r: torch.Tensor, cutoff: float, sigma_q: float, degree: int
) -> torch.Tensor:
    """phi(r) u(r / r_c) (1/Å): the pair kernel times the smooth cutoff envelope.

    Args:
        r: (E,) pair distances (Å), > 0.
        cutoff: r_c (Å); the result is exactly 0 for r >= r_c.
        sigma_q: Gaussian charge width (Å); 0 for point charges.
        degree: the envelope's polynomial degree p.

    Returns:
        (E,) 1/Å (multiply by k_e q_i q_j for eV).
    """
    # The network's own envelope and the Coulomb module's pair kernel (with no Ewald split:
    # inverse width 0 leaves erf(r / 2 sigma_q) / r, or 1/r for point charges).
    envelope = polynomial_envelope(r, cutoff, degree)
    kernel = pair_kernel(r, sigma_q, torch.zeros_like(r))
    return kernel * envelope


def screening_energies(
    charges: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    cutoff: float,
    sigma_q: float,
    degree: int,
    coulomb_constant: float = COULOMB_CONSTANT,
) -> torch.Tensor:
    """Per-atom energies (N,) eV of the screened short-range Coulomb part, to be ADDED to
    the Coulomb energies: -(k_e / 2) q_i sum_j q_j phi(r_ij) u(r_ij / r_c).

    Args:
        charges: (N,) e.
        edge_index: (2, E) int64 directed edges (every pair in both directions, as the
            network's neighbour list holds them); edges longer than ``cutoff`` add 0.
        edge_vectors: (E, 3) Å, r_j - r_i (+ cell shift) per edge.
        cutoff: r_c (Å), the network's cutoff.
        sigma_q: Gaussian charge width (Å), the one of the Coulomb energy.
        degree: the polynomial degree of the envelope (the network's).
        coulomb_constant: k_e (eV·Å/e²); an argument so that TorchScript (the exported
            model) can compile the function (it cannot read module-level floats).

    Returns:
        (N,) eV; summed over a structure, minus the Coulomb energy of its pairs inside
        the cutoff (each weighted by the envelope).
    """
    sender, receiver = edge_index[0], edge_index[1]
    r = torch.linalg.norm(edge_vectors, dim=-1)
    pair = screening_pair_energy(r, cutoff, sigma_q, degree)
    per_edge = (-0.5 * coulomb_constant) * charges[sender] * charges[receiver] * pair
    out = torch.zeros_like(charges)
    return out.index_add(0, sender, per_edge)
