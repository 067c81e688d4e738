"""Node-wise product of aggregated messages: raises the body order of a layer by one.

A message-passing layer sums two-body terms m_i = sum_j phi(r_ij) x_j Y(r_ij). Multiplying
two independent linear mixes of m_i, coupled by Clebsch-Gordan coefficients,

    p_i = sum_paths w_path  [ (A m_i)_l1  (x)  (B m_i)_l2 ]_l3,

gives three-body terms (i, j, k) per layer, as in MACE's symmetric contraction at
correlation order 2 (here with two different mixes A and B, channel by channel: 'uuu').
The cost is per atom, not per edge, hence small next to the message computation.

With parity off, its 1 x 1 -> 1 path makes pseudovectors a x b; contracted with a vector in
the next layer they give triple products (a x b) . c, which change sign under a mirror: a
two-layer network can then tell enantiomers apart.
"""

from __future__ import annotations

import torch
from e3nn import o3


class NodeProduct(torch.nn.Module):
    """p = Linear(TP_uuu(Linear_a(m), Linear_b(m))): irreps_node -> irreps_out.

    Args:
        irreps_node: irreps of the aggregated (and linearly mixed) messages m, (N, dim).
        irreps_out: irreps of the result, (N, dim_out); paths that reach no irrep of
            ``irreps_out`` are not computed.
    """

    def __init__(self, irreps_node: o3.Irreps, irreps_out: o3.Irreps) -> None:
        super().__init__()
        irreps_node = o3.Irreps(irreps_node)
        irreps_out = o3.Irreps(irreps_out)
        # Channel-wise products need the same number of channels for every l.
        mul = max(m for m, _ in irreps_node)
        irreps_mid = o3.Irreps([(mul, ir) for _, ir in irreps_node])
        targets = {ir for _, ir in irreps_out}
        tp_out, instructions = [], []
        for i1, (_, ir1) in enumerate(irreps_mid):
            for i2, (_, ir2) in enumerate(irreps_mid):
                for ir in ir1 * ir2:
                    if ir in targets:
                        instructions.append((i1, i2, len(tp_out), "uuu", True))
                        tp_out.append((mul, ir))
        if not instructions:
            raise ValueError(
                f"NodeProduct: no path from {irreps_node} x {irreps_node} reaches {irreps_out}"
            )
        self.irreps_in = irreps_node
        self.irreps_out = irreps_out
        self.linear_a = o3.Linear(irreps_node, irreps_mid)
        self.linear_b = o3.Linear(irreps_node, irreps_mid)
        self.tp = o3.TensorProduct(
            irreps_mid, irreps_mid, o3.Irreps(tp_out), instructions, internal_weights=True
        )
        self.linear_out = o3.Linear(self.tp.irreps_out, irreps_out)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return self.linear_out(self.tp(self.linear_a(m), self.linear_b(m)))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out})"
