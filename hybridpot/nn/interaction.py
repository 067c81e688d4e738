"""The equivariant interaction (message-passing) block.

For atom i with features h_i and edges i -> j (r_ij = r_j - r_i + shifts, |r_ij| < r_c):

    x_j   = Linear(h_j)                                   mix channels (per atom, before gather)
    w_ij  = MLP(radial features of |r_ij|)                one weight per path and channel
    m_ij  = sum_paths w_ij,path  [x_j (x) Y(r_ij / |r_ij|)]_path    Clebsch-Gordan, 'uvu'
    m_i   = (1 / avg_num_neighbors) sum_j m_ij            aggregate at the receiver i
    z_i   = Linear(m_i) [+ NodeProduct(m_i)] [+ SelfConnection(h_i, species_i)]
    h'_i  = Gate(z_i)  [+ h_i when the irreps match (residual)]

The radial MLP has no biases and silu(0) = 0, so an edge at or beyond the cutoff (radial
features exactly 0) gets exactly zero weights: it contributes nothing, smoothly.
The Gate passes even scalars through silu, odd scalars through tanh, and multiplies each
l > 0 channel by sigmoid of an extra scalar (Weiler et al. 2018), so it is equivariant.
"""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
from e3nn import nn as e3nn_nn
from e3nn import o3

from ..hyperparameters import SELF_CONNECTIONS, check_choice
from .product import NodeProduct


def make_gate(irreps_out: o3.Irreps) -> e3nn_nn.Gate:
    """A Gate whose output irreps are ``irreps_out`` (scalars first, then l > 0)."""
    irreps_out = o3.Irreps(irreps_out)
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    # Even scalars: silu. Odd scalars (pseudo-scalars) need an odd function: tanh.
    acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
    gates = o3.Irreps([(gated.num_irreps, "0e")]) if gated.num_irreps > 0 else o3.Irreps("")
    return e3nn_nn.Gate(scalars, acts, gates, [torch.sigmoid] if gated else [], gated)


def message_paths(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, targets: set[o3.Irrep]
) -> tuple[o3.Irreps, list[tuple]]:
    """All 'uvu' paths irreps_in (x) irreps_sh -> ir with ir in ``targets``, one output each."""
    irreps_msg, instructions = [], []
    for i1, (mul, ir1) in enumerate(irreps_in):
        for i2, (_, ir2) in enumerate(irreps_sh):
            for ir in ir1 * ir2:
                if ir in targets:
                    instructions.append((i1, i2, len(irreps_msg), "uvu", True))
                    irreps_msg.append((mul, ir))
    return o3.Irreps(irreps_msg), instructions


class InteractionBlock(torch.nn.Module):
    """One message-passing layer: (N, irreps_in) -> (N, irreps_out).

    Args:
        irreps_in: irreps of the input atom features h.
        irreps_out: irreps of the output features (what the Gate returns).
        irreps_sh: irreps of the edge harmonics passed to ``forward`` (E, irreps_sh.dim).
        num_species: S, width of the one-hot species passed to ``forward``.
        num_radial: width of the radial features passed to ``forward``.
        radial_mlp: hidden widths of the MLP from radial features to path weights.
        avg_num_neighbors: the neighbour sum is divided by this (keeps features O(1)).
        product: add the node-wise product of messages (one more body order per layer).
        irreps_node: irreps of the mixed messages fed to the product (default irreps_out).
        self_connection: "species" (a linear map per element, cost grows with S),
            "linear" (one linear map), or "none".
        resnet: add h to the output when irreps_in == irreps_out.

    ``forward(h, node_attrs, edge_index, sh, radial)`` with h (N, irreps_in.dim),
    node_attrs (N, S) one-hot species, edge_index (2, E) rows (i, j), sh (E, irreps_sh.dim),
    radial (E, num_radial). Messages flow j -> i.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        num_species: int,
        num_radial: int,
        radial_mlp: tuple[int, ...],
        avg_num_neighbors: float,
        product: bool = True,
        irreps_node: o3.Irreps | None = None,
        self_connection: str = "species",
        resnet: bool = True,
    ) -> None:
        super().__init__()
        check_choice(self_connection, "self_connection", SELF_CONNECTIONS)
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.gate = make_gate(self.irreps_out)
        irreps_gate_in = self.gate.irreps_in
        if product:
            irreps_node = o3.Irreps(irreps_node if irreps_node is not None else self.irreps_out)
        else:
            irreps_node = irreps_gate_in
        self.irreps_node = irreps_node

        # Linear mixing before the gather: N rows instead of E.
        self.linear_up = o3.Linear(self.irreps_in, self.irreps_in)
        irreps_msg, instructions = message_paths(
            self.irreps_in, self.irreps_sh, {ir for _, ir in irreps_node}
        )
        if not instructions:
            raise ValueError(
                f"no Clebsch-Gordan path from {self.irreps_in} x {self.irreps_sh} reaches "
                f"{irreps_node}"
            )
        self.tp = o3.TensorProduct(
            self.irreps_in,
            self.irreps_sh,
            irreps_msg,
            instructions,
            shared_weights=False,
            internal_weights=False,
        )
        self.radial_mlp = e3nn_nn.FullyConnectedNet(
            [num_radial, *radial_mlp, self.tp.weight_numel], torch.nn.functional.silu
        )
        self.linear_msg = o3.Linear(irreps_msg, irreps_node)
        self.inv_avg_num_neighbors = 1.0 / float(avg_num_neighbors)

        n_terms = 1
        self.product = None
        if product:
            self.linear_node = o3.Linear(irreps_node, irreps_gate_in)
            self.product = NodeProduct(irreps_node, irreps_gate_in)
            n_terms += 1
        self.self_connection_kind = self_connection
        self.self_connection = None
        if self_connection == "species":
            self.self_connection = o3.FullyConnectedTensorProduct(
                self.irreps_in, o3.Irreps(f"{num_species}x0e"), irreps_gate_in
            )
        elif self_connection == "linear":
            self.self_connection = o3.Linear(self.irreps_in, irreps_gate_in)
        if self.self_connection is not None:
            n_terms += 1
        # The terms are independent at initialisation: keep the sum at unit variance.
        self.term_scale = 1.0 / math.sqrt(n_terms)
        self.resnet = bool(resnet) and self.irreps_in == self.irreps_out

    def forward(
        self,
        h: torch.Tensor,
        node_attrs: torch.Tensor,
        edge_index: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
    ) -> torch.Tensor:
        x = self.linear_up(h)
        num_edges = edge_index.shape[1]
        chunk = self.edge_chunk
        if chunk is None or num_edges <= chunk:
            m = self._messages(x, edge_index, sh, radial)
        else:
            # Bounded working set: the per-edge tensors (gathered features, radial
            # weights, tensor-product paths; ~8 kB per edge for a MACE-size model) of one
            # chunk at a time. Each chunk is checkpointed: autograd keeps only its inputs
            # and recomputes its messages in the backward pass (exact; ~1 extra forward
            # of the edge work).
            m = None
            for start in range(0, num_edges, chunk):
                part = torch.utils.checkpoint.checkpoint(
                    self._messages,
                    x,
                    edge_index[:, start : start + chunk],
                    sh[start : start + chunk],
                    radial[start : start + chunk],
                    use_reentrant=False,
                )
                m = part if m is None else m + part
        m = self.linear_msg(m * self.inv_avg_num_neighbors)
        if self.product is not None:
            z = self.linear_node(m) + self.product(m)
        else:
            z = m
        if self.self_connection_kind == "species":
            z = z + self.self_connection(h, node_attrs)
        elif self.self_connection_kind == "linear":
            z = z + self.self_connection(h)
        out = self.gate(z * self.term_scale)
        if self.resnet:
            out = out + h
        return out

    #: Largest number of edges whose messages are computed at once (None: all edges);
    #: set through :meth:`hybridpot.model.HybridModel.set_edge_chunk`.
    edge_chunk: int | None = None

    def _messages(self, x, edge_index, sh, radial) -> torch.Tensor:
        """(N, C) sum over edges i -> j of TP(x_j, Y(r_ij), R(r_ij)) at each receiver i."""
        receiver, sender = edge_index[0], edge_index[1]
        weights = self.radial_mlp(radial)
        # index_select (not x[sender]): its backward is an index_add, much faster on CPU
        # than the accumulating index_put that advanced indexing needs.
        messages = self.tp(torch.index_select(x, 0, sender), sh, weights)
        m = torch.zeros((x.shape[0], messages.shape[1]), dtype=messages.dtype, device=x.device)
        return m.index_add(0, receiver, messages)

    def __repr__(self) -> str:
        extras = []
        if self.product is not None:
            extras.append("product")
        extras.append(f"self_connection={self.self_connection_kind}")
        if self.resnet:
            extras.append("resnet")
        return (
            f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
            f"messages {self.tp.irreps_out.simplify()}, {', '.join(extras)})"
        )
