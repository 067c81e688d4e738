"""A faster drop-in for torch-pme's ``MeshInterpolator`` (same weights, same results).

Charge assignment to a mesh and back-interpolation touch p^3 mesh points per atom. torch-pme
0.5 gathers the three 1D weights p^3 times per atom through index tensors of shape
(p^3, N) and scatters with a multi-dimensional ``index_put_``; at p = 7 (343 points per
atom) that dominated the whole Coulomb calculation (~90% of the time at N = 8,000). Here the
p^3 weights are one broadcast outer product of the three 1D weight vectors, the mesh is
addressed through flat indices, and assignment / interpolation are one ``index_add`` /
``index_select`` each, whose backward passes are the same two operations swapped.

The 1D weights (Lagrange or P3M B-spline polynomials) and the choice of nodes are
torch-pme's own (``_compute_1d_weights``), so both interpolators agree to rounding.
"""

from __future__ import annotations

import torch
from torchpme.lib.mesh_interpolator import MeshInterpolator


class SeparableMeshInterpolator(MeshInterpolator):
    """:class:`torchpme.lib.MeshInterpolator` with vectorised, flat-index assignment.

    Same constructor and methods used by the calculators: ``update``,
    ``compute_weights``, ``points_to_mesh``, ``mesh_to_points``.
    """

    def compute_weights(self, positions: torch.Tensor) -> None:
        """Weights (N, p^3) and flat mesh indices (N, p^3) of every atom's p^3 nodes.

        Args:
            positions: (N, 3) Å, Cartesian; need not be wrapped (indices wrap modulo n).
        """
        p = self.interpolation_nodes
        ns = self.ns_mesh
        # Position in units of mesh steps along each lattice vector.
        scaled = ns * torch.matmul(positions, self.inverse_cell)
        if p % 2 == 0:
            # Even p: nodes around the midpoint of the two nearest mesh points.
            nearest = torch.floor(scaled.detach())
            offsets = scaled - (nearest + 0.5)
        else:
            # Odd p: nodes centred on the nearest mesh point.
            nearest = torch.round(scaled.detach())
            offsets = scaled - nearest
        weights_1d = self._compute_1d_weights(offsets)  # (p, N, 3)
        first = 1 - (p + 1) // 2
        steps = torch.arange(first, first + p, device=positions.device)
        nodes = (nearest.long()[None] + steps[:, None, None]) % ns  # (p, N, 3)

        wx, wy, wz = (weights_1d[:, :, a].T for a in range(3))  # (N, p) each
        weights = wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]
        ix, iy, iz = (nodes[:, :, a].T for a in range(3))
        flat = (ix[:, :, None, None] * ns[1] + iy[:, None, :, None]) * ns[2] + iz[:, None, None, :]
        n = positions.shape[0]
        self._node_weights = weights.reshape(n, p**3)
        self._node_index = flat.reshape(-1)

    def points_to_mesh(self, particle_weights: torch.Tensor) -> torch.Tensor:
        """Spread (N, C) particle weights (charges) onto the mesh: (C, nx, ny, nz)."""
        n_channels = particle_weights.shape[1]
        nx, ny, nz = (int(x) for x in self.ns_mesh)
        channels = []
        for a in range(n_channels):
            values = (particle_weights[:, a : a + 1] * self._node_weights).reshape(-1)
            mesh = torch.zeros(nx * ny * nz, dtype=values.dtype, device=values.device)
            channels.append(mesh.index_add(0, self._node_index, values))
        return torch.stack(channels).reshape(n_channels, nx, ny, nz)

    def mesh_to_points(self, mesh_vals: torch.Tensor) -> torch.Tensor:
        """Interpolate (C, nx, ny, nz) mesh values at the atoms: (N, C)."""
        n_channels = mesh_vals.shape[0]
        flat = mesh_vals.reshape(n_channels, -1)
        n = self._node_weights.shape[0]
        values = [
            (flat[a].index_select(0, self._node_index).reshape(n, -1) * self._node_weights).sum(1)
            for a in range(n_channels)
        ]
        return torch.stack(values, dim=1)


class PolynomialWeights:
    """torch-pme's 1D interpolation weights, evaluated by Horner's rule on a coefficient
    matrix: w_k(x) = sum_m C[k, m] x^m for the p weights of an order-p scheme.

    Same polynomials as ``MeshInterpolator._compute_1d_weights`` (Lagrange for PME,
    B-splines for P3M): the coefficients are recovered exactly from it (a Vandermonde
    solve, then the small-denominator rationals they are, checked against it), so the
    values agree to rounding. torch-pme writes each polynomial term by term (~100
    operations for p = 7, and three times that once differentiated twice, as in
    training on forces); Horner's rule takes 2p.

    Args:
        method: ``"Lagrange"`` or ``"P3M"``.
        nodes: p, interpolation nodes per axis.
    """

    def __init__(self, method: str, nodes: int):
        import numpy as np
        from fractions import Fraction

        reference = SeparableMeshInterpolator(
            torch.eye(3, dtype=torch.float64),
            torch.ones(3, dtype=torch.int64),
            interpolation_nodes=nodes,
            method=method,
        )._compute_1d_weights
        self.method, self.nodes = method, nodes
        x = (np.arange(nodes) - (nodes - 1) / 2) / nodes  # distinct points in (-1/2, 1/2)
        values = reference(torch.tensor(x)[:, None])[:, :, 0].numpy()  # (p weights, p points)
        vandermonde = x[:, None] ** np.arange(nodes)[None, :]
        coefficients = np.linalg.solve(vandermonde, values.T).T  # (p weights, p powers)
        exact = np.vectorize(lambda c: float(Fraction(c).limit_denominator(10**7)))(coefficients)
        probe = torch.linspace(-0.5, 0.5, 101, dtype=torch.float64)[:, None]
        expected = reference(probe)[:, :, 0].numpy()
        powers = probe.numpy() ** np.arange(nodes)[None, :]
        best = min((exact, coefficients), key=lambda c: np.abs(powers @ c.T - expected.T).max())
        self._coefficients = torch.tensor(best, dtype=torch.float64)
        self._on_device: dict = {}

    def __call__(self, offsets: torch.Tensor) -> torch.Tensor:
        """(p, N, 3) weights of (N, 3) offsets in mesh steps (real or complex)."""
        real = offsets.real.dtype if offsets.is_complex() else offsets.dtype
        key = (offsets.device, real)
        if key not in self._on_device:
            self._on_device[key] = self._coefficients.to(device=offsets.device, dtype=real)
        c = self._on_device[key]  # (p, p)
        x = offsets[..., None]  # (N, 3, 1)
        acc = c[:, -1].expand(*offsets.shape, self.nodes)
        for m in range(self.nodes - 2, -1, -1):
            acc = acc * x + c[:, m]
        return acc.permute(2, 0, 1)
