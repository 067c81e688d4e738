"""The pair kernel of Gaussian charges and its Ewald split (a torch-pme ``Potential``).

Two Gaussian charge clouds of width ``sigma_q`` (density q (2 pi sigma_q^2)^(-3/2)
exp(-r^2 / (2 sigma_q^2))) at distance r interact by

    phi(r) = erf(r / (2 sigma_q)) / r        (phi = 1/r for point charges, sigma_q = 0)

(the convolution of two Gaussians of width sigma_q is a Gaussian of width sqrt(2) sigma_q).
The Ewald split with torch-pme's ``smearing`` s (alpha = 1/(sqrt(2) s)) writes phi as

    phi_LR(r) = erf(r / (sqrt(2) s)) / r                       (smooth: done in k-space)
    phi_SR(r) = phi(r) - phi_LR(r)
              = [erfc(r / (sqrt(2) s)) - erfc(r / (2 sigma_q))] / r   (real space)

which needs s > sqrt(2) sigma_q for phi_SR to be positive and to decay like
erfc(r / (sqrt(2) s)). The long-range kernel, its Fourier transform and its self term
sqrt(2/pi)/s are torch-pme's CoulombPotential ones (they do not depend on sigma_q).

Neutralising background: the real-space kernel has a k = 0 Fourier component

    integral phi_SR d^3r = 4 pi (s^2 / 2 - sigma_q^2)

that a uniform background of charge -Q cancels; the resulting energy is
-pi Q^2 (s^2 - 2 sigma_q^2) / V, so that the total does not depend on s.
"""

from __future__ import annotations

import math

import torch
from torchpme import CoulombPotential

from ..keys import COULOMB_CONSTANT

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def erf_over_r(r: torch.Tensor, width: float) -> torch.Tensor:
    """erf(r / width) / r with its finite limit 2 / (sqrt(pi) width) at r = 0.

    Args:
        r: distances (any shape), Å, >= 0.
        width: Å, > 0.

    Returns:
        Tensor like ``r`` in 1/Å; differentiable (also twice) at r = 0.
    """
    # Below r = 1e-3 width the Taylor series 2/(sqrt(pi) w) (1 - x^2/3 + x^4/10), x = r/w,
    # is exact to double precision; the masked branch keeps NaN out of the gradients.
    small = r < 1e-3 * width
    r_safe = torch.where(small, torch.ones_like(r) * width, r)
    x2 = (r / width) ** 2
    series = _TWO_OVER_SQRT_PI / width * (1.0 - x2 / 3.0 + x2 * x2 / 10.0)
    return torch.where(small, series, torch.erf(r_safe / width) / r_safe)


def erf_difference_over_r(r: torch.Tensor, width_a: float, width_b: float) -> torch.Tensor:
    """[erf(r / a) - erf(r / b)] / r for widths 0 < a < b, finite at r = 0.

    Evaluated as [erfc(r / b) - erfc(r / a)] / r so that nothing cancels at large r.

    Args:
        r: distances (any shape), Å, >= 0.
        width_a: Å, the smaller width.
        width_b: Å, the larger width.

    Returns:
        Tensor like ``r`` in 1/Å.
    """
    small = r < 1e-3 * width_a
    r_safe = torch.where(small, torch.ones_like(r) * width_a, r)
    r2 = r * r
    inv = [1.0 / width_a**n - 1.0 / width_b**n for n in (1, 3, 5)]
    series = _TWO_OVER_SQRT_PI * (inv[0] - r2 * inv[1] / 3.0 + r2 * r2 * inv[2] / 10.0)
    exact = (torch.erfc(r_safe / width_b) - torch.erfc(r_safe / width_a)) / r_safe
    return torch.where(small, series, exact)


def gaussian_pair_kernel(r: torch.Tensor, sigma_q: float) -> torch.Tensor:
    """phi(r) = erf(r / (2 sigma_q)) / r, or 1/r for sigma_q = 0 (1/Å, no prefactor)."""
    if sigma_q > 0:
        return erf_over_r(r, 2.0 * sigma_q)
    return 1.0 / r


class GaussianCoulombPotential(CoulombPotential):
    """torch-pme Coulomb potential for Gaussian charges of width ``sigma_q``.

    Args:
        smearing: Ewald split length s (Å), > sqrt(2) sigma_q.
        sigma_q: width of the Gaussian charges (Å), >= 0; 0 for point charges.
        prefactor: k_e; default eV·Å/e² so that energies are in eV.

    Only the real-space kernel (``from_dist``, ``sr_from_dist``) and the background term
    differ from :class:`torchpme.CoulombPotential`; the 2D ``pbc_correction`` of torch-pme
    is switched off (the slab correction is applied along the true normal elsewhere).
    """

    def __init__(self, smearing: float, sigma_q: float = 0.0, prefactor: float = COULOMB_CONSTANT):
        if not sigma_q >= 0:
            raise ValueError(f"sigma_q must be >= 0 Å, got {sigma_q!r}")
        if not smearing > math.sqrt(2.0) * sigma_q:
            raise ValueError(
                f"smearing must be > sqrt(2) * sigma_q = {math.sqrt(2.0) * sigma_q:.6g} Å "
                f"for Gaussian charges of width sigma_q = {sigma_q} Å, got {smearing!r}"
            )
        super().__init__(smearing=float(smearing), prefactor=float(prefactor))
        self.sigma_q = float(sigma_q)

    def from_dist(self, dist: torch.Tensor, pair_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Full kernel k_e phi(r) (eV/e² with the default prefactor)."""
        result = gaussian_pair_kernel(dist, self.sigma_q)
        if pair_mask is not None:
            result = result * pair_mask
        return self.prefactor * result

    def sr_from_dist(
        self, dist: torch.Tensor, pair_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Real-space kernel k_e [erf(r/(2 sigma_q)) - erf(r/(sqrt2 s))] / r.

        Written with erfc so that no cancellation occurs at large r.
        """
        width_lr = math.sqrt(2.0) * float(self.smearing)
        if self.sigma_q > 0:
            # [erf(r/a) - erf(r/b)]/r, a = 2 sigma_q < b = sqrt2 s: difference of two
            # smooth functions, finite at r = 0 (coincident Gaussians are allowed).
            result = erf_difference_over_r(dist, 2.0 * self.sigma_q, width_lr)
        else:
            result = torch.erfc(dist / width_lr) / dist
        if pair_mask is not None:
            result = result * pair_mask
        return self.prefactor * result

    def background_correction(self) -> torch.Tensor:
        """pi (s^2 - 2 sigma_q^2) k_e: the background energy is -this * Q^2 / V."""
        return self.prefactor * torch.pi * (self.smearing**2 - 2.0 * self.sigma_q**2)

    def pbc_correction(
        self,
        periodic: torch.Tensor | None,
        positions: torch.Tensor,
        cell: torch.Tensor,
        charges: torch.Tensor,
    ) -> torch.Tensor:
        """No correction here: slabs are corrected along their normal by ``slab.py``."""
        return torch.zeros_like(charges)

    def extra_repr(self) -> str:
        return f"smearing={float(self.smearing):.6g}, sigma_q={self.sigma_q:.6g}"
