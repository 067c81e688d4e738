"""Charge projection and energy readout."""

import pytest
import torch

from hybridpot.nn import ChargeReadout, EnergyReadout, project_charges
from hybridpot.nn.irreps import exact_float64


def batch_of(sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


@pytest.mark.parametrize("uniform", [True, False])
def test_projection_sums_exactly_to_each_total_charge(uniform):
    sizes = [5, 1, 17, 3]
    batch = batch_of(sizes)
    gen = torch.Generator().manual_seed(0)
    q_tilde = 3.0 * torch.randn(batch.shape[0], generator=gen, dtype=torch.float64)
    weights = None if uniform else torch.rand(batch.shape[0], generator=gen, dtype=torch.float64)
    total = torch.tensor([0.0, -1.0, 2.5, 1e3], dtype=torch.float64)
    q = project_charges(q_tilde, weights, batch, len(sizes), total)
    sums = torch.zeros(4, dtype=torch.float64).index_add(0, batch, q)
    assert (sums - total).abs().max() < 1e-12
    # The correction is w_i * (Q_b - sum q~) / sum w, so it is proportional to w in each b.
    w = torch.ones_like(q_tilde) if uniform else weights
    correction = (q - q_tilde) / w
    for b in range(4):
        c = correction[batch == b]
        assert torch.allclose(c, c[0].expand_as(c), atol=1e-12, rtol=0)


def test_projection_leaves_already_consistent_charges_alone():
    batch = batch_of([3, 2])
    q_tilde = torch.tensor([0.5, -0.25, -0.25, 1.0, 0.0], dtype=torch.float64)
    q = project_charges(q_tilde, None, batch, 2, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.equal(q, q_tilde)


@pytest.mark.parametrize("projection", ["weighted", "uniform"])
def test_charge_readout_exact_per_structure(projection):
    torch.manual_seed(0)
    readout = ChargeReadout(6, (5,), projection).double()
    batch = batch_of([4, 7, 1])
    scalars = torch.randn(12, 6, dtype=torch.float64)
    total = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    q = readout(scalars, batch, 3, total)
    sums = torch.zeros(3, dtype=torch.float64).index_add(0, batch, q)
    assert (sums - total).abs().max() < 1e-12
    # A one-atom structure carries exactly its total charge.
    assert q[-1].item() == pytest.approx(0.5, abs=1e-15)


def test_weighted_projection_weights_are_positive_and_learned():
    torch.manual_seed(0)
    readout = ChargeReadout(4, (3,), "weighted").double()
    scalars = torch.randn(6, 4, dtype=torch.float64) * 50  # drives the softplus to extremes
    q = readout(scalars, torch.zeros(6, dtype=torch.long), 1, torch.tensor([1.0]).double())
    assert torch.isfinite(q).all() and abs(q.sum().item() - 1.0) < 1e-12
    q.pow(2).sum().backward()
    grads = [p.grad for p in readout.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_energy_readout_shift_scale_and_isolated_reference():
    torch.manual_seed(0)
    readout = exact_float64(EnergyReadout(3, (4,), ["H", "O"], {"H": -13.6, "O": -2042.1}, 2.5))
    # Rows: 3 atoms (H, O, O) then the isolated H and O references.
    species = torch.tensor([0, 1, 1])
    scalars = torch.randn(5, 3, dtype=torch.float64)
    scalars[2] = scalars[4]  # the second O looks exactly like an isolated O
    e = readout(scalars, species, 3)
    mlp = readout.mlp(scalars).squeeze(-1)
    expected = 2.5 * (mlp[:3] - mlp[3:][species]) + torch.tensor(
        [-13.6, -2042.1, -2042.1], dtype=torch.float64
    )
    assert torch.allclose(e, expected, atol=1e-12, rtol=0)
    assert e[2].item() == -2042.1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(atomic_energies={"N": 1.0}), ValueError, r"atomic_energies has elements \['N'\]"),
        (dict(atomic_energies=[1.0]), TypeError, "atomic_energies must be a dict"),
        (dict(atomic_energies={"H": "x"}), TypeError, r"atomic_energies\['H'\] must be a number"),
        (dict(atomic_energies={"H": float("nan")}), ValueError, "must be finite"),
        (dict(energy_scale=0.0), ValueError, "energy_scale must be a finite positive number"),
        (dict(energy_scale="1"), TypeError, "energy_scale must be a number"),
    ],
)
def test_energy_readout_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        EnergyReadout(3, (4,), ["H", "O"], **kwargs)


def test_charge_readout_bad_projection():
    with pytest.raises(ValueError, match="charge_projection must be one of .* got 'softmax'"):
        ChargeReadout(3, (4,), "softmax")
