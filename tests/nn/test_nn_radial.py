"""Radial basis and smooth cutoff envelope."""

import math

import pytest
import torch

from hybridpot.nn import BesselBasis, PolynomialEnvelope, RadialEmbedding

RC = 4.0


def derivatives(f, r: torch.Tensor):
    """Values and the first two derivatives of an elementwise f at r, by autograd."""
    r = r.clone().requires_grad_(True)
    y = f(r)
    (d1,) = torch.autograd.grad(y.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    return y.detach(), d1.detach(), d2.detach()


@pytest.mark.parametrize("degree", [2, 5, 6, 9])
def test_envelope_value_and_two_derivatives_vanish_at_cutoff(degree):
    env = PolynomialEnvelope(RC, degree)
    r0 = torch.tensor([0.0], dtype=torch.float64)
    assert env(r0).item() == 1.0
    # Just inside the cutoff, u, u', u'' are O(eps^3), O(eps^2), O(eps); at r = rc exactly
    # (approached from inside by autograd of the polynomial) they are 0 up to rounding.
    eps = 1e-4
    y, d1, d2 = derivatives(env, torch.tensor([RC - eps], dtype=torch.float64))
    assert abs(y.item()) < 1e-9
    assert abs(d1.item()) < 1e-6
    assert abs(d2.item()) < 1e-2
    # The third derivative does not vanish: d2 shrinks linearly, not faster.
    _, _, d2_half = derivatives(env, torch.tensor([RC - eps / 2], dtype=torch.float64))
    assert d2_half.item() == pytest.approx(d2.item() / 2, rel=1e-3)
    # Central finite differences of the polynomial itself at d = 1 (where the code zeroes
    # it) confirm the analytic conditions u(1) = u'(1) = u''(1) = 0.
    p = degree
    a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2

    def poly(d):
        return 1 + a * d**p + b * d ** (p + 1) + c * d ** (p + 2)

    # Truncation error of the central difference of u' is u'''(1) h^2 / 6 with u''' ~ p^3.
    h = 1e-4
    assert abs(poly(1.0)) < 1e-12
    assert abs((poly(1 + h) - poly(1 - h)) / (2 * h)) < 1e-8 * p**3
    assert abs((poly(1 + h) - 2 * poly(1.0) + poly(1 - h)) / h**2) < 1e-4


def test_envelope_is_exactly_zero_beyond_cutoff_and_decreasing_inside():
    env = PolynomialEnvelope(RC, 6)
    r = torch.tensor([RC, RC + 1e-12, RC + 0.5, 100.0], dtype=torch.float64)
    assert torch.equal(env(r), torch.zeros(4, dtype=torch.float64))
    inside = torch.linspace(0, RC * (1 - 1e-6), 200, dtype=torch.float64)
    u = env(inside)
    assert (u[1:] <= u[:-1]).all() and (u >= 0).all()


def test_radial_features_vanish_smoothly_and_exactly():
    emb = RadialEmbedding(RC, num_radial=8).to(torch.float64)
    y, d1, d2 = derivatives(
        lambda r: emb(r).sum(-1), torch.tensor([RC - 1e-4], dtype=torch.float64)
    )
    assert abs(y.item()) < 1e-8 and abs(d1.item()) < 1e-5 and abs(d2.item()) < 1e-1
    far = emb(torch.tensor([RC, 5.0, 50.0], dtype=torch.float64))
    assert torch.equal(far, torch.zeros_like(far))


def test_bessel_values_and_finite_at_zero():
    basis = BesselBasis(RC, num_radial=4).to(torch.float64)
    r = torch.tensor([0.7, 2.3], dtype=torch.float64)
    n = torch.arange(1, 5, dtype=torch.float64)
    expected = math.sqrt(2 / RC) * torch.sin(n * math.pi * r[:, None] / RC) / r[:, None]
    assert torch.allclose(basis(r), expected, atol=1e-14, rtol=1e-13)
    # r = 0 (coincident atoms): the limit k_n sqrt(2/rc), with a finite gradient.
    y, d1, _ = derivatives(lambda r: basis(r).sum(-1), torch.zeros(1, dtype=torch.float64))
    assert torch.allclose(y, (math.sqrt(2 / RC) * n * math.pi / RC).sum().reshape(1))
    assert torch.isfinite(d1).all()


def test_trainable_frequencies_get_gradients():
    basis = BesselBasis(RC, num_radial=3, trainable=True)
    assert isinstance(basis.frequencies, torch.nn.Parameter)
    basis(torch.tensor([1.0, 2.0])).sum().backward()
    assert basis.frequencies.grad is not None and torch.isfinite(basis.frequencies.grad).all()
    fixed = BesselBasis(RC, num_radial=3)
    assert not any(True for _ in fixed.parameters())


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: BesselBasis(0.0), "cutoff must be a finite positive number"),
        (lambda: BesselBasis(float("nan")), "cutoff must be a finite positive number"),
        (lambda: BesselBasis("5"), "cutoff must be a number"),
        (lambda: BesselBasis(RC, num_radial=0), "num_radial must be an integer >= 1, got 0"),
        (lambda: PolynomialEnvelope(RC, 1), "polynomial_degree must be an integer >= 2, got 1"),
        (lambda: PolynomialEnvelope(RC, 2.5), "polynomial_degree must be an integer >= 2"),
    ],
)
def test_bad_options(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()
