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


def pair_kernel(r: torch.Tensor, sigma_q: float, inv_width: torch.Tensor) -> torch.Tensor:
    """f(r) = [erf(r / (2 sigma_q)) - erf(r * inv_width)] / r (1/Å), finite at r = 0.

    Args:
        r: (P,) Å.
        sigma_q: Gaussian charge width (Å); 0 gives erfc(r * inv_width) / r.
        inv_width: (P,) 1/Å, 1 / (sqrt2 s) per pair (0: the whole Coulomb kernel).
    """
    if sigma_q == 0:
        return torch.erfc(r * inv_width) / r
    # Written without module-level constants so that TorchScript compiles it (the
    # exported model, hybridpot.electrostatics.scriptable, calls this very function).
    two_over_sqrt_pi = 2.0 / math.sqrt(math.pi)
    inv_a = 1.0 / (2.0 * sigma_q)  # the larger inverse width (s > sqrt2 sigma_q)
    small = r < 1e-3 / inv_a
    r_safe = torch.where(small, torch.full_like(r, 1.0 / inv_a), r)
    # Taylor series of the difference at small r (exact to double precision there).
    r2 = r * r
    d1 = inv_a - inv_width
    d3 = inv_a**3 - inv_width**3
    d5 = inv_a**5 - inv_width**5
    series = two_over_sqrt_pi * (d1 - r2 * d3 / 3.0 + r2 * r2 * d5 / 10.0)
    exact = (torch.erfc(r_safe * inv_width) - torch.erfc(r_safe * inv_a)) / r_safe
    return torch.where(small, series, exact)


def pair_kernel_derivative(r: torch.Tensor, sigma_q: float, inv_width: torch.Tensor):
    """f'(r) = df/dr of :func:`pair_kernel` (1/Å^2), finite at r = 0 (differentiable).

    With g(x) = (2/sqrt(pi)) exp(-x^2) the derivative of erf:
    f' = [a g(r a) - b g(r b) - f] / r (a = 1/(2 sigma_q), b = ``inv_width``), and
    for point charges f' = -[b g(r b) + f] / r.
    """
    # No module-level constants, as in pair_kernel: the exported induction term
    # (hybridpot.electrostatics.scriptable_induction) compiles this function.
    two_over_sqrt_pi = 2.0 / math.sqrt(math.pi)
    if sigma_q == 0:
        gb = two_over_sqrt_pi * inv_width * torch.exp(-((r * inv_width) ** 2))
        return -(gb + pair_kernel(r, sigma_q, inv_width)) / r
    inv_a = 1.0 / (2.0 * sigma_q)
    small = r < 1e-3 / inv_a
    r_safe = torch.where(small, torch.full_like(r, 1.0 / inv_a), r)
    ga = two_over_sqrt_pi * inv_a * torch.exp(-((r_safe * inv_a) ** 2))
    gb_safe = two_over_sqrt_pi * inv_width * torch.exp(-((r_safe * inv_width) ** 2))
    # f at r_safe, where the closed form is exact (the series is only for small r)
    f_safe = (torch.erfc(r_safe * inv_width) - torch.erfc(r_safe * inv_a)) / r_safe
    exact = (ga - gb_safe - f_safe) / r_safe
    d3 = inv_a**3 - inv_width**3
    d5 = inv_a**5 - inv_width**5
    series = two_over_sqrt_pi * (-2.0 * r * d3 / 3.0 + 0.4 * r**3 * d5)
    return torch.where(small, series, exact)


class PairKernel(torch.autograd.Function):
    """f(r) with the analytic derivative f'(r) as its backward.

    Autograd through the erfc/where chain of :func:`pair_kernel` keeps ~10 intermediate
    tensors per pair and replays them backwards; here the forward keeps r only and the
    backward is one evaluation of f'. The backward is written in differentiable torch
    operations, so it is itself differentiated when ``create_graph`` asks for it (second
    derivatives for training on forces).
    """

    @staticmethod
    def forward(ctx, r, inv_width, sigma_q):
        ctx.save_for_backward(r, inv_width)
        ctx.sigma_q = sigma_q
        return pair_kernel(r, sigma_q, inv_width)

    @staticmethod
    def backward(ctx, grad):
        r, inv_width = ctx.saved_tensors
        return grad * pair_kernel_derivative(r, ctx.sigma_q, inv_width), None, None


def self_term(smearing):
    """k_e phi_LR(0) = k_e sqrt(2/pi) / s: each charge's interaction with its own
    long-range Gaussian, which the k-space sum includes (eV/e^2; s float or tensor)."""
    return COULOMB_CONSTANT * math.sqrt(2.0 / math.pi) / smearing


def background_term(smearing, sigma_q: float):
    """k_e pi (s^2 - 2 sigma_q^2): the neutralising background's energy is -this Q^2 / V
    (the k = 0 component of the real-space kernel; module docstring)."""
    return COULOMB_CONSTANT * math.pi * (smearing**2 - 2.0 * sigma_q**2)


def long_range_potential(phi_lr, charges, smearing, sigma_q: float, total_charge, volume):
    """Per-atom V_i of the long-range part (E_LR = sum_i q_i V_i), shared by all k-space
    methods.

    Args:
        phi_lr: k-space potential at each atom, sum over all j and images of q_j
            k_e phi_LR, self image included (the k-space sum cannot leave it out), eV/e.
        charges: e; smearing: s (Å); total_charge: Q of the atom's structure (e);
            volume: Å^3 (all broadcastable, e.g. per atom).

    Returns:
        V_i = [phi_lr - q_i k_e phi_LR(0) - 2 background Q / V] / 2: minus the self term,
        minus the neutralising background (the factor 2 compensates the 1/2), halved
        because each pair is counted from both sides.
    """
    return 0.5 * (
        phi_lr
        - charges * self_term(smearing)
        - 2.0 * background_term(smearing, sigma_q) * total_charge / volume
    )


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
        result = pair_kernel(dist, self.sigma_q, torch.zeros_like(dist))
        if pair_mask is not None:
            result = result * pair_mask
        return self.prefactor * result

    def sr_from_dist(
        self, dist: torch.Tensor, pair_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Real-space kernel k_e [erf(r/(2 sigma_q)) - erf(r/(sqrt2 s))] / r.

        Written with erfc so that no cancellation occurs at large r.
        """
        inv_width = torch.full_like(dist, 1.0 / (math.sqrt(2.0) * float(self.smearing)))
        result = pair_kernel(dist, self.sigma_q, inv_width)
        if pair_mask is not None:
            result = result * pair_mask
        return self.prefactor * result

    def background_correction(self) -> torch.Tensor:
        """pi (s^2 - 2 sigma_q^2) k_e: the background energy is -this * Q^2 / V."""
        return self.prefactor / COULOMB_CONSTANT * background_term(self.smearing, self.sigma_q)

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
