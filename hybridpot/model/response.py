"""Response of the charges: dipole, polarization, Born effective charges, field terms.

All quantities come from the per-atom charges q_i(R) and the positions r_i as given
(unwrapped when they come from an MD trajectory):

    M_b = sum_{i in b} q_i r_i                       (e·Å)   the dipole of structure b
    Z*_i[a, c] = dM_a / dr_ic = q_i δ_ac + sum_j r_ja dq_j/dr_ic        (e)

The second term of Z* is what position-dependent charges add to the rigid-ion q_i·1.
Because the charges depend on positions only through relative vectors and their sum is
fixed, sum_i dq_j/dr_i = 0: the acoustic sum rule sum_i Z*_i = Q·1 holds exactly and Z*
does not depend on the origin.

A uniform field E (V/Å) adds, per structure:
- non-periodic: the energy -M·E (eV); its forces, by autograd, are Z*ᵀE;
- periodic in any direction: the forces Z*ᵀE only. The periodic dipole (and with it the
  energy) is defined only up to the polarization quantum, so no field energy is reported;
  along a trajectory with unwrapped positions, E_pot + E_kin - E·(M(t) - M(0)) is the
  conserved quantity (the field's work is E·ΔM).
"""

from __future__ import annotations

import torch

from ..data.segments import segment_sum
from ..derivatives import has_dipole, has_volume


def dipole_moments(
    charges: torch.Tensor, positions: torch.Tensor, batch: torch.Tensor, num_graphs: int
) -> torch.Tensor:
    """M_b = sum_{i in b} q_i r_i, (B, 3) e·Å, differentiable in charges and positions.

    Args:
        charges: (N,) e.
        positions: (N, 3) Å, as given (not wrapped into the cell).
        batch: (N,) int64 structure index.
        num_graphs: B.
    """
    return segment_sum(charges[:, None] * positions, batch, num_graphs)


def born_effective_charges(
    dipole: torch.Tensor, positions: torch.Tensor, *, create_graph: bool
) -> torch.Tensor:
    """Z*_i[a, c] = dM_a/dr_ic by autograd: three vector-Jacobian products.

    Args:
        dipole: (B, 3) e·Å from :func:`dipole_moments`, computed from ``positions``.
        positions: (N, 3) Å, the leaf the charges (and ``dipole``) depend on. Structures
            are independent, so d(sum_b M_b,a)/dr_i is atom i's own dM_a/dr_i.
        create_graph: keep the graph (training on Born effective charges).

    Returns:
        (N, 3, 3) e. The autograd graph of ``dipole`` is kept (retain_graph) so forces can
        still be taken afterwards.
    """
    rows = []
    for a in range(3):
        (grad,) = torch.autograd.grad(
            dipole[:, a].sum(),
            positions,
            retain_graph=True,
            create_graph=create_graph,
            allow_unused=True,
        )
        rows.append(torch.zeros_like(positions) if grad is None else grad)
    return torch.stack(rows, dim=1)


def field_energy(dipole: torch.Tensor, field: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """-M_b·E_b for non-periodic structures, 0 for the others: (B,) eV.

    Args:
        dipole: (B, 3) e·Å.
        field: (B, 3) V/Å.
        pbc: (B, 3) bool.
    """
    energy = -(dipole * field.to(dipole.dtype)).sum(-1)
    return torch.where(has_dipole(pbc), energy, torch.zeros_like(energy))


def field_potential(
    positions: torch.Tensor, field: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor
) -> torch.Tensor:
    """d(field energy)/dq_i = -r_i·E for atoms of non-periodic structures, 0 elsewhere:
    (N,) eV/e, the potential of the field that :func:`field_energy` adds.

    Args:
        positions: (N, 3) Å, as given.
        field: (B, 3) V/Å.
        pbc: (B, 3) bool.
        batch: (N,) int64 structure index.
    """
    field = field.to(positions.dtype)
    field = torch.where(has_dipole(pbc)[:, None], field, torch.zeros_like(field))
    return -(positions * field.index_select(0, batch)).sum(-1)


def periodic_field_forces(
    dipole: torch.Tensor,
    field: torch.Tensor,
    pbc: torch.Tensor,
    positions: torch.Tensor,
    *,
    create_graph: bool,
) -> torch.Tensor:
    """F_i = Z*_iᵀE for atoms of structures periodic in some direction, 0 elsewhere.

    One vector-Jacobian product: d(sum_b E_b·M_b)/dr_i over the periodic structures.

    Args:
        dipole: (B, 3) e·Å from ``positions``.
        field: (B, 3) V/Å.
        pbc: (B, 3) bool.
        positions: (N, 3) Å, the leaf.
        create_graph: keep the graph (training on forces).

    Returns:
        (N, 3) eV/Å.
    """
    periodic = ~has_dipole(pbc)
    work = (dipole * field.to(dipole.dtype)).sum(-1)
    work = torch.where(periodic, work, torch.zeros_like(work)).sum()
    (grad,) = torch.autograd.grad(
        work, positions, retain_graph=True, create_graph=create_graph, allow_unused=True
    )
    return torch.zeros_like(positions) if grad is None else grad


def polarization(dipole: torch.Tensor, volume: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """P_b = M_b / V_b for fully periodic structures, 0 for the others: (B, 3) e/Å².

    Defined up to the polarization quantum (e R / V for a lattice vector R): use
    unwrapped positions along a trajectory and compare differences.
    """
    bulk = has_volume(pbc)
    safe = torch.where(bulk, volume, torch.ones_like(volume))
    return torch.where(bulk[:, None], dipole / safe[:, None], torch.zeros_like(dipole))
