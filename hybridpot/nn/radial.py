"""Radial features of an edge: a Bessel basis times a smooth polynomial cutoff envelope.

For an edge of length r (Å) and a cutoff r_c (Å) the features are

    e_n(r) = b_n(r) * u(r / r_c),      n = 1 .. num_radial,

with the (spherical) Bessel basis b_n(r) = sqrt(2 / r_c) * sin(k_n r) / r, k_n = n pi / r_c,
and the polynomial envelope of degree p (DimeNet, Gasteiger et al. 2020)

    u(d) = 1 - (p+1)(p+2)/2 d^p + p(p+2) d^(p+1) - p(p+1)/2 d^(p+2),

whose value and first two derivatives vanish at d = 1, so the energy and the forces are
continuous and the force constants too when an atom crosses the cutoff. The envelope is
set to exactly zero for r >= r_c, so edges outside the cutoff contribute nothing at all.
"""

from __future__ import annotations

import math
import numbers

import torch

from .. import hyperparameters as hp


def _check_cutoff(cutoff: float) -> float:
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real):
        raise TypeError(f"cutoff must be a number (Å), got {type(cutoff).__name__}")
    if not math.isfinite(cutoff) or cutoff <= 0:
        raise ValueError(f"cutoff must be a finite positive number of Å, got {cutoff}")
    return float(cutoff)


class BesselBasis(torch.nn.Module):
    """Radial Bessel functions ``sqrt(2/r_c) sin(k_n r) / r`` with k_n = n pi / r_c.

    Args:
        cutoff: r_c in Å.
        num_radial: number of functions (n = 1 .. num_radial), >= 1.
        trainable: if True the frequencies n (k_n = n pi / r_c) are learned, starting at 1..n.

    Shapes: ``forward(r)`` maps lengths (E,) in Å to (E, num_radial) in 1/Å.
    """

    def __init__(
        self, cutoff: float, num_radial: int = hp.NUM_RADIAL, trainable: bool = hp.TRAINABLE_RADIAL
    ) -> None:
        super().__init__()
        self.cutoff = _check_cutoff(cutoff)
        if isinstance(num_radial, bool) or not isinstance(num_radial, int) or num_radial < 1:
            raise ValueError(f"num_radial must be an integer >= 1, got {num_radial!r}")
        self.num_radial = num_radial
        self.trainable = bool(trainable)
        # Stored as multiples n of pi / r_c: exact in float32 and float64 alike.
        n = torch.arange(1, num_radial + 1, dtype=torch.get_default_dtype())
        if self.trainable:
            self.frequencies = torch.nn.Parameter(n)
        else:
            self.register_buffer("frequencies", n)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        k = self.frequencies * (math.pi / self.cutoff)  # 1/Å
        # sin(k r) / r written as k * sinc(k r / pi): finite (= k) with a finite gradient at
        # r = 0, so coincident atoms give finite numbers instead of 0/0.
        return self.prefactor * k * torch.sinc(r.unsqueeze(-1) * self.frequencies / self.cutoff)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, num_radial={self.num_radial}, trainable={self.trainable}"


def polynomial_envelope(r: torch.Tensor, cutoff: float, degree: int) -> torch.Tensor:
    """u(r / r_c) (E,) of :class:`PolynomialEnvelope` for distances ``r`` (E,) Å: 1 at 0;
    u, u' and u'' vanish at r_c; exactly 0 beyond. A plain function, so TorchScript
    (exported models) compiles it."""
    p = degree
    # Coefficients fixed by u(1) = u'(1) = u''(1) = 0 with u(0) = 1.
    a = -(p + 1) * (p + 2) / 2.0
    b = float(p * (p + 2))
    c = -p * (p + 1) / 2.0
    d = r / cutoff
    u = 1.0 + d**p * (a + d * (b + d * c))
    # The polynomial does not stay 0 beyond d = 1: zero it there explicitly.
    return torch.where(d < 1.0, u, torch.zeros_like(u))


class PolynomialEnvelope(torch.nn.Module):
    """Smooth cutoff u(r / r_c): u(0) = 1; u, u' and u'' vanish at r_c; exactly 0 beyond.

    Args:
        cutoff: r_c in Å.
        degree: the polynomial degree p >= 2 (higher = flatter near 0, steeper near r_c).

    Shapes: ``forward(r)`` maps (E,) Å to (E,) dimensionless.
    """

    def __init__(self, cutoff: float, degree: int = hp.POLYNOMIAL_DEGREE) -> None:
        super().__init__()
        self.cutoff = _check_cutoff(cutoff)
        p = hp.check_polynomial_degree(degree)
        self.degree = p

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return polynomial_envelope(r, self.cutoff, self.degree)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, degree={self.degree}"


class RadialEmbedding(torch.nn.Module):
    """Edge radial features ``BesselBasis(r) * PolynomialEnvelope(r)``, (E,) Å -> (E, num_radial).

    Every feature and its first two derivatives vanish at the cutoff; edges with r >= cutoff
    give exactly zero features.
    """

    def __init__(
        self,
        cutoff: float,
        num_radial: int = hp.NUM_RADIAL,
        trainable: bool = hp.TRAINABLE_RADIAL,
        polynomial_degree: int = hp.POLYNOMIAL_DEGREE,
    ) -> None:
        super().__init__()
        self.basis = BesselBasis(cutoff, num_radial, trainable)
        self.envelope = PolynomialEnvelope(cutoff, polynomial_degree)
        self.num_radial = num_radial

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.basis(r) * self.envelope(r).unsqueeze(-1)
