"""The induction energy of one structure in TorchScript, for the exported model.

The same first-order term as :mod:`.induction` (read its docstring for the physics):

    E_ind = -(k_e / 2) sum_i alpha_i |e_i|^2,

e_i the field of the other charges at atom i, each pair's field screened inside the
network's cutoff. The full field comes, as in the eager model, from the gradients of
Coulomb energies at fixed charges,

    k_e e[q] = q dE(1)/dR - dB(1, q)/dR,   B(1, q) = [E(1 + q) - E(1 - q)] / 2,

here of :class:`.scriptable.ScriptableCoulomb` (the exported Coulomb sum, equal to the
Python one), taken by ``torch.autograd.grad`` inside the module with ``create_graph``, so
the engine's own differentiation of the energy (forces, stress) runs through the field.

TorchScript has no ``torch.enable_grad()`` block: when an engine calls the model with
gradients off (energy only), the module switches them on for the field and back off
afterwards (``torch.set_grad_enabled``); an error inside the Coulomb sum (coincident
point charges, a singular cell) leaves them on, and the call fails anyway.
"""

# TorchScript compiles typing.List/Optional.
# ruff: noqa: UP006, UP035, UP045

from __future__ import annotations

from typing import List, Optional

import torch

from ..keys import COULOMB_CONSTANT
from .induction import field_from_energy_gradients, induction_energies, inside_cutoff_field
from .scriptable import ScriptableCoulomb


class ScriptableInduction(torch.nn.Module):
    """Per-atom induction energies of one structure, in TorchScript.

    Args:
        sigma_q, method, accuracy, overrides: the model's Coulomb settings (as for
            :class:`.scriptable.ScriptableCoulomb`).
        polarizabilities: (S,) Å³ per element of the model's element list, >= 0 (copied
            into a buffer: the exported file holds the trained values).
        cutoff: r_c (Å), the network's cutoff (the field of pairs inside it is screened).
        degree: the envelope's polynomial degree p.
    """

    def __init__(
        self,
        sigma_q: float,
        method: str,
        accuracy: float,
        overrides: dict,
        polarizabilities: torch.Tensor,
        cutoff: float,
        degree: int,
    ):
        super().__init__()
        if polarizabilities.dim() != 1 or bool((polarizabilities < 0).any()):
            smallest = float(polarizabilities.min()) if polarizabilities.numel() else None
            raise ValueError(
                "polarizabilities must be a 1-D tensor of values >= 0 (Å³ per element), got "
                f"shape {tuple(polarizabilities.shape)}, smallest value {smallest}"
            )
        self.coulomb = ScriptableCoulomb(sigma_q, method, accuracy, overrides)
        self.register_buffer("polarizabilities", polarizabilities.detach().clone())
        self.sigma_q = float(sigma_q)
        self.cutoff = float(cutoff)
        self.degree = int(degree)
        self.coulomb_constant = float(COULOMB_CONSTANT)

    def _gradient(
        self,
        energy: torch.Tensor,
        shift: torch.Tensor,
        retain: bool,
        create: bool,
    ) -> torch.Tensor:
        """d energy / d shift (N, 3); zeros where the energy does not depend on it (no
        pairs, e.g. one atom). With ``create`` the graph is kept whatever ``retain`` says:
        it is shared with the engine's own backward pass (forces, stress)."""
        grads: List[Optional[torch.Tensor]] = torch.autograd.grad(
            [energy],
            [shift],
            retain_graph=retain or create,
            create_graph=create,
            allow_unused=True,
        )
        gradient = grads[0]
        if gradient is None:
            return torch.zeros_like(shift)
        return gradient

    def field(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        charges: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
    ) -> torch.Tensor:
        """Field e (N, 3) e/Å² of the charges at each atom, each pair's screened inside
        the cutoff (:func:`.induction.induction_field` for one structure).

        Args:
            positions: (N, 3) Å. cell: (3, 3) Å. pbc: (3,) bool. charges: (N,) e.
            edge_index: (2, E) int64 directed edges inside the cutoff.
            edge_vectors: (E, 3) Å, r_j - r_i (+ cell shift), from the same positions.

        Returns:
            (N, 3) e/Å², differentiable w.r.t. positions, cell, charges and edge vectors
            when gradients are on and any of them requires one.
        """
        was_enabled = torch.is_grad_enabled()
        differentiable = was_enabled and (
            positions.requires_grad
            or cell.requires_grad
            or charges.requires_grad
            or edge_vectors.requires_grad
        )
        if not was_enabled:
            torch.set_grad_enabled(True)
        shift = torch.zeros_like(positions).requires_grad_(True)
        moved = positions + shift
        ones = torch.ones_like(charges)
        cross = 0.5 * (
            self.coulomb(moved, cell, pbc, ones + charges).sum()
            - self.coulomb(moved, cell, pbc, ones - charges).sum()
        )
        # retain the graph: the shifted positions serve both gradients
        d_cross = self._gradient(cross, shift, True, differentiable)
        d_unit = self._gradient(
            self.coulomb(moved, cell, pbc, ones).sum(), shift, False, differentiable
        )
        if not was_enabled:
            torch.set_grad_enabled(False)
        full = field_from_energy_gradients(charges, d_unit, d_cross, self.coulomb_constant)
        return full - inside_cutoff_field(
            charges, edge_index, edge_vectors, self.sigma_q, self.cutoff, self.degree
        )

    def forward(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        charges: torch.Tensor,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
    ) -> torch.Tensor:
        """Per-atom induction energies (N,) eV, -(k_e / 2) alpha_i |e_i|^2.

        Args:
            as :meth:`field`, plus species: (N,) int64 index of each atom's element in
            the model's element list.
        """
        field = self.field(positions, cell, pbc, charges, edge_index, edge_vectors)
        alpha = self.polarizabilities.to(field.dtype).index_select(0, species)
        return induction_energies(alpha, field, self.coulomb_constant)
