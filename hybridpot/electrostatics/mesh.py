"""The 1D interpolation weights of the mesh methods, evaluated cheaply.

Charge assignment and back-interpolation (:mod:`.mesh_potential`) use p weights per axis
and atom, polynomials of the atom's offset from its nearest mesh point: Lagrange
polynomials for PME, B-splines for P3M, exactly torch-pme's.
"""

from __future__ import annotations

import torch
from torchpme.lib.mesh_interpolator import MeshInterpolator


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
        from fractions import Fraction

        import numpy as np

        reference = MeshInterpolator(
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
