"""Induction: point polarisabilities polarised by the field of the charges beyond the cutoff.

Latent charges depend on each atom's own neighbourhood only, so a molecule's charges do
not respond to an ion farther away than the network can see; its energy then misses the
induction attraction -alpha Q^2 k_e / (2 R^4) of a polarisable molecule in the field of a
charge Q at distance R. This term supplies it, to first order:

    e_i     = -d/dr_i sum_j q_j K(r_i - r_j)    (all other atoms and periodic images; e/Å²)
    mu_i    = alpha_i e_i                        (e·Å, induced dipole)
    E_ind   = -(k_e / 2) sum_i alpha_i |e_i|^2   (eV)

with alpha_i (Å³) the polarisability of atom i's element and e_i the field of the other
charges (Gaussian charges of width sigma_q, the Coulomb energy's pair kernel phi(r) =
erf(r / (2 sigma_q)) / r, 1/r for point charges; periodic images, the neutralising
background and the slab correction included) with each pair's field screened inside the
network's cutoff r_c, whatever ``coulomb_split`` says:

    e_i = sum_j q_j (-phi'(r_ij)) (r_i - r_j) / r_ij (1 - u(r_ij / r_c))

(u the network's polynomial envelope: 1 at 0; u, u', u'' vanish at r_c). Beyond r_c
each pair's field is the Coulomb field; inside, its strength falls smoothly to 0 like
(r / r_c)^p, so bonded neighbours do not polarise each other (the network owns the short
range). The pair field is screened, not the potential: the gradient of phi (1 - u) would
point the wrong way inside the cutoff (K rises from 0 to phi) and overshoot the bare
field by 20 % at 0.7 r_c, a structure the network would have to cancel.

First order: the induced dipoles respond to the charges, not to each other (the
dipole-dipole coupling, of relative size ~alpha / R^3 ~ 1e-2 beyond a 5 Å cutoff, is
left out), and the charges do not respond to the dipoles.

How the full field is computed, for molecules, slabs and bulk cells alike: with C the
Coulomb matrix, E(x) = x^T C x / 2 the energy of charges x and B(w, q) = w^T C q =
[E(w + q) - E(w - q)] / 2, the derivatives at fixed charges are

    dE(1)/dr_k    = -k_e e_k[1]                     (the field of unit charges)
    dB(1, q)/dr_k = -k_e (e_k[q] + q_k e_k[1])
    =>  k_e e[q] = -dB(1, q)/dR + q * dE(1)/dR

(the self and self-image terms of C do not depend on the positions). Both derivatives
are taken with respect to a zero displacement D added to the positions, so they are
partial derivatives at fixed charges and stay differentiable in R, the cell and q (forces,
stress and training on forces by autograd; the Coulomb module runs as plain autograd,
which differentiates to any order). The screening then subtracts u times the pair field
over the network's edges (the pairs inside r_c, periodic images included). Cost: three
Coulomb evaluations and their gradient.
"""

from __future__ import annotations

import torch

from ..keys import COULOMB_CONSTANT
from ..nn.radial import polynomial_envelope
from .potential import pair_kernel_derivative


def induction_field(
    electrostatics,
    plan,
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    batch: torch.Tensor,
    charges: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    cutoff: float,
    degree: int,
) -> torch.Tensor:
    """Field e (N, 3) e/Å² of the charges at each atom, each pair's screened inside the
    cutoff (multiply by k_e for V/Å).

    Args:
        electrostatics: the model's :class:`~.module.Electrostatics` (its ``sigma_q`` is
            the charges' width).
        plan: its :class:`~.plan.CoulombPlan` for these positions.
        positions: (N, 3) Å (strained positions when a stress is wanted).
        cell: (B, 3, 3) Å.
        pbc: (B, 3) bool.
        batch: (N,) int64 structure index.
        charges: (N,) e.
        edge_index: (2, E) the network's directed edges (pairs inside the cutoff).
        edge_vectors: (E, 3) Å, r_j - r_i (+ cell shift) of those edges, from
            ``positions`` and ``cell``.
        cutoff: r_c (Å), the network's cutoff.
        degree: the envelope's polynomial degree p.

    Returns:
        (N, 3) e/Å², differentiable w.r.t. positions, cell and charges when they require
        gradients (graph kept: the result is differentiated again for forces).
    """
    # Keep the gradients' graph only where something upstream will be differentiated.
    differentiable = torch.is_grad_enabled() and any(
        t.requires_grad for t in (positions, cell, charges, edge_vectors)
    )
    with torch.enable_grad():
        shift = torch.zeros_like(positions, requires_grad=True)
        moved = positions + shift

        def energy(x: torch.Tensor) -> torch.Tensor:
            """E(x), the Coulomb energy of charges x (scalar eV, whole batch)."""
            return electrostatics(
                moved,
                cell,
                pbc,
                x,
                batch,
                plan=plan,
                proportional_upstream=False,
                create_graph=True,
            ).sum()

        ones = torch.ones_like(charges)
        cross = 0.5 * (energy(ones + charges) - energy(ones - charges))
        # retain_graph: the shifted positions serve both gradients.
        (d_cross,) = torch.autograd.grad(
            cross, shift, retain_graph=True, create_graph=differentiable
        )
        (d_unit,) = torch.autograd.grad(energy(ones), shift, create_graph=differentiable)
    full = field_from_energy_gradients(charges, d_unit, d_cross)
    return full - inside_cutoff_field(
        charges, edge_index, edge_vectors, electrostatics.sigma_q, cutoff, degree
    )


def field_from_energy_gradients(
    charges: torch.Tensor,
    unit_gradient: torch.Tensor,
    cross_gradient: torch.Tensor,
    coulomb_constant: float = COULOMB_CONSTANT,
) -> torch.Tensor:
    """The full field e[q] = (q dE(1)/dR - dB(1, q)/dR) / k_e (N, 3) e/Å² (module docstring).

    Args:
        charges: (N,) e.
        unit_gradient: (N, 3) eV/Å, dE(1)/dR, the gradient of the Coulomb energy of unit
            charges at fixed charges.
        cross_gradient: (N, 3) eV/Å, dB(1, q)/dR with B(w, q) = [E(w + q) - E(w - q)] / 2.
        coulomb_constant: k_e (eV·Å/e²); an argument so that TorchScript compiles it.
    """
    return (charges[:, None] * unit_gradient - cross_gradient) / coulomb_constant


def inside_cutoff_field(
    charges: torch.Tensor,
    edge_index: torch.Tensor,
    edge_vectors: torch.Tensor,
    sigma_q: float,
    cutoff: float,
    degree: int,
) -> torch.Tensor:
    """The part of the field that the screening removes, sum over the edges inside the
    cutoff of u(r / r_c) times the pair field (N, 3) e/Å² (to be SUBTRACTED).

    Args:
        charges: (N,) e.
        edge_index: (2, E) int64 directed edges (i receives j's field on edge (i, j)).
        edge_vectors: (E, 3) Å, r_j - r_i (+ cell shift).
        sigma_q: Gaussian charge width (Å); 0 for point charges.
        cutoff: r_c (Å); edges longer than r_c add 0.
        degree: the envelope's polynomial degree p.
    """
    # On edge (i, j) with v = r_j - r_i, j's field at i is
    # -q_j phi'(r) (r_i - r_j) / r = q_j phi'(r) v / r; u(r / r_c) of it leaves.
    i, j = edge_index[0], edge_index[1]
    r = torch.linalg.norm(edge_vectors, dim=-1)
    slope = pair_kernel_derivative(r, sigma_q, torch.zeros_like(r))
    weight = charges.index_select(0, j) * slope * polynomial_envelope(r, cutoff, degree) / r
    return torch.zeros(charges.shape[0], 3, dtype=charges.dtype, device=charges.device).index_add(
        0, i, weight[:, None] * edge_vectors
    )


def induction_energies(
    polarizabilities: torch.Tensor,
    field: torch.Tensor,
    coulomb_constant: float = COULOMB_CONSTANT,
) -> torch.Tensor:
    """Per-atom induction energies -(k_e / 2) alpha_i |e_i|^2 (N,) eV.

    Args:
        polarizabilities: (N,) Å³, >= 0.
        field: (N, 3) e/Å², from :func:`induction_field`.
        coulomb_constant: k_e (eV·Å/e²).
    """
    return (-0.5 * coulomb_constant) * polarizabilities * (field * field).sum(-1)
