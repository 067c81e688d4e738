"""A TorchScript twin of :class:`~hybridpot.nn.network.EquivariantNetwork` (for export).

The eager network is the one that trains and runs in Python; it checks its inputs on the
host, chunks its edges with ``torch.utils.checkpoint`` and returns a dict, none of which
TorchScript compiles. :class:`ScriptableNetwork` runs the SAME submodules (the e3nn
linears, tensor products, gates and MLPs, compiled with ``e3nn.util.jit.compile``, and
the same parameter tensors) through a forward written for TorchScript, for one or more
structures with pre-computed species indices. It computes the same function term by term
(tested equal to the eager network in ``tests/deploy/test_scriptable.py``):

    h0 = embedding[species]                     (+ one isolated atom per element)
    h  = Block_t(h, node_attrs, edges, Y(r_ij), R(|r_ij|)),  t = 0 .. T-1
    E_i = scale (MLP_E(s_i) - MLP_E(s_iso[Z_i])) + shift[Z_i]
    q_i = MLP_q(s_i) projected to sum to the structure's total charge

Predicting per-atom dipoles (``predict_dipoles``) is not part of the export.
"""

# TorchScript (and metatomic's annotation check) compile typing.List/Dict/Tuple/Optional.
# ruff: noqa: UP006, UP035, UP045

from __future__ import annotations

from typing import Optional

import torch
from e3nn.util.jit import compile as e3nn_compile

from .interaction import InteractionBlock
from .network import EquivariantNetwork
from .readout import W_MIN


class _ScriptableBlock(torch.nn.Module):
    """One interaction block, the forward of :class:`InteractionBlock` without chunking."""

    def __init__(self, block: InteractionBlock):
        super().__init__()
        self.linear_up = e3nn_compile(block.linear_up)
        self.tp = e3nn_compile(block.tp)
        self.radial_mlp = e3nn_compile(block.radial_mlp)
        self.linear_msg = e3nn_compile(block.linear_msg)
        self.has_product = block.product is not None
        self.linear_node = e3nn_compile(block.linear_node) if self.has_product else None
        self.product = e3nn_compile(block.product) if self.has_product else None
        # Two attributes (one of them None): the two kinds take different arguments.
        kind = block.self_connection_kind
        self.species_connection = e3nn_compile(block.self_connection) if kind == "species" else None
        self.linear_connection = e3nn_compile(block.self_connection) if kind == "linear" else None
        self.gate = e3nn_compile(block.gate)
        self.inv_avg_num_neighbors = float(block.inv_avg_num_neighbors)
        self.term_scale = float(block.term_scale)
        self.resnet = bool(block.resnet)

    def forward(
        self,
        h: torch.Tensor,
        node_attrs: torch.Tensor,
        edge_index: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
    ) -> torch.Tensor:
        x = self.linear_up(h)
        receiver, sender = edge_index[0], edge_index[1]
        weights = self.radial_mlp(radial)
        messages = self.tp(torch.index_select(x, 0, sender), sh, weights)
        m = torch.zeros((x.shape[0], messages.shape[1]), dtype=messages.dtype, device=x.device)
        m = m.index_add(0, receiver, messages)
        m = self.linear_msg(m * self.inv_avg_num_neighbors)
        z = m
        linear_node = self.linear_node
        product = self.product
        if linear_node is not None and product is not None:
            z = linear_node(m) + product(m)
        species_connection = self.species_connection
        if species_connection is not None:
            z = z + species_connection(h, node_attrs)
        linear_connection = self.linear_connection
        if linear_connection is not None:
            z = z + linear_connection(h)
        out = self.gate(z * self.term_scale)
        if self.resnet:
            out = out + h
        return out


class ScriptableNetwork(torch.nn.Module):
    """TorchScript-compilable evaluation of an :class:`EquivariantNetwork`'s weights.

    Args:
        network: the eager network (float32 or float64); its parameters are shared, not
            copied.

    Raises:
        ValueError: the network predicts per-atom dipoles (not exported) or no charges.
    """

    def __init__(self, network: EquivariantNetwork):
        super().__init__()
        if network.dipole_readout is not None:
            raise ValueError("exporting a network with predict_dipoles=True is not supported")
        if network.charge_readout is None:
            raise ValueError("the exported network must predict charges (predict_charges)")
        self.num_species = int(network.num_species)
        self.num_scalars = int(network.num_scalars)
        self.needs_one_hot = bool(network.needs_one_hot)
        self.embedding_weight = network.embedding.weight
        self.register_buffer("species_range", network.species_range.clone())
        self.register_buffer("index_table", network.embedding.index_table.clone())
        self.radial = e3nn_compile(network.radial)
        self.sh = e3nn_compile(network.sh)
        self.blocks = torch.nn.ModuleList([_ScriptableBlock(b) for b in network.blocks])
        readout = network.energy_readout
        self.energy_mlp = e3nn_compile(readout.mlp)
        self.register_buffer("energy_shift", readout.shift.clone())
        self.register_buffer("energy_scale", readout.scale.clone())
        self.charge_mlp = e3nn_compile(network.charge_readout.mlp)
        self.weighted_charges = network.charge_readout.projection == "weighted"
        self.w_min = float(W_MIN)

    @torch.jit.export
    def species_index(self, numbers: torch.Tensor) -> torch.Tensor:
        """(N,) atomic numbers -> (N,) species indices; raises for unknown elements."""
        if numbers.numel() > 0:
            if bool((numbers < 1).any()) or bool((numbers >= self.index_table.shape[0]).any()):
                raise ValueError("atomic numbers must be in 1..118")
        species = self.index_table[numbers.long()]
        if bool((species < 0).any()):
            raise ValueError(
                "the structure contains elements that the model does not know; "
                "see the model's metadata for its elements"
            )
        return species

    def forward(
        self,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        total_charge: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-atom short-range energies (N,) eV and charges (N,) e.

        Args:
            species: (N,) int64 species indices (:meth:`species_index`).
            edge_index: (2, E) int64, rows (i, j); the message of edge i -> j goes to i.
            edge_vectors: (E, 3) Å, r_j - r_i + S_ij @ cell, in the network's dtype.
            batch: (N,) int64 structure of each atom.
            num_graphs: B.
            total_charge: (B,) e.
        """
        n_atoms = species.shape[0]
        species_ext = torch.cat([species, self.species_range])
        h = self.embedding_weight[species_ext]
        if self.needs_one_hot:
            node_attrs = torch.nn.functional.one_hot(species_ext, self.num_species).to(h.dtype)
        else:
            node_attrs = h
        # |r| and r/|r|, finite (value and gradient) for coincident atoms (as the eager net)
        r2 = (edge_vectors * edge_vectors).sum(-1)
        nonzero = r2 > 0
        r_safe = torch.sqrt(torch.where(nonzero, r2, torch.ones_like(r2)))
        r = torch.where(nonzero, r_safe, torch.zeros_like(r2))
        sh = self.sh(edge_vectors / r_safe.unsqueeze(-1))
        radial = self.radial(r)
        for block in self.blocks:
            h = block(h, node_attrs, edge_index, sh, radial)
        scalars = h[:, : self.num_scalars]

        e = self.energy_mlp(scalars).squeeze(-1)
        e_atoms, e_isolated = e[:n_atoms], e[n_atoms:]
        energies = self.energy_scale * (e_atoms - e_isolated[species]) + self.energy_shift[species]

        out = self.charge_mlp(scalars[:n_atoms])
        q_tilde = out[:, 0]
        weights: Optional[torch.Tensor] = None
        if self.weighted_charges:
            weights = torch.nn.functional.softplus(out[:, 1]) + self.w_min
        if weights is None:
            weights = torch.ones_like(q_tilde)
        # q_i = q~_i + w_i (Q_b - sum_b q~) / sum_b w   (hybridpot.nn.readout.project_charges)
        zeros = torch.zeros(num_graphs, dtype=q_tilde.dtype, device=q_tilde.device)
        sum_q = zeros.index_add(0, batch, q_tilde)
        sum_w = zeros.index_add(0, batch, weights)
        excess = (total_charge.to(q_tilde.dtype) - sum_q) / sum_w.clamp_min(self.w_min)
        charges = q_tilde + weights * excess[batch]
        return energies.to(edge_vectors.dtype), charges
