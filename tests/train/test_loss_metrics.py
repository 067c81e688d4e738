"""Losses and metrics against hand computations, with label masks and weights."""

import ase
import numpy as np
import pytest
import torch

from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.train.config import LossConfig
from hybridpot.train.loss import Loss
from hybridpot.train.metrics import Metrics, format_table


def _graph(n_atoms, labels, periodic=True):
    rng = np.random.default_rng(n_atoms)
    atoms = ase.Atoms(
        numbers=[11, 17] * (n_atoms // 2),
        positions=rng.uniform(0, 5, (n_atoms, 3)),
        cell=np.eye(3) * 6.0 if periodic else None,
        pbc=periodic,
    )
    return graph_from_atoms(atoms, 3.0, labels=labels)


@pytest.fixture
def batch():
    """Three structures (2, 2, 4 atoms); energy labelled on 0 and 2, weights 1, 1, 2."""
    g0 = _graph(
        2,
        {
            keys.ENERGY: np.array([-1.0]),
            keys.FORCES: np.zeros((2, 3)),
            keys.WEIGHT: np.array([1.0]),
        },
    )
    g1 = _graph(
        2,
        {
            keys.FORCES: np.ones((2, 3)),
            keys.WEIGHT: np.array([1.0]),
            keys.CHARGES: np.array([0.5, -0.5]),
        },
    )
    g2 = _graph(
        4,
        {
            keys.ENERGY: np.array([-4.0]),
            keys.FORCES: np.zeros((4, 3)),
            keys.WEIGHT: np.array([2.0]),
        },
    )
    return batch_graphs([g0, g1, g2])


def _prediction(batch):
    forces = batch.labels[keys.FORCES].clone()
    forces[0] += torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)  # structure 0 (weight 1)
    forces[4] += torch.tensor([0.0, -0.6, 0.0], dtype=torch.float64)  # structure 2 (weight 2)
    return {
        # per-atom energy errors: 0.2/2 = 0.1 (s0), unlabelled (s1), 0.8/4 = 0.2 (s2)
        keys.ENERGY: torch.tensor([-0.8, 100.0, -3.2], dtype=torch.float64),
        keys.FORCES: forces,
        keys.CHARGES: torch.tensor([9.0, 9.0, 0.4, -0.4, 9, 9, 9, 9], dtype=torch.float64),
    }


def test_mse_loss_by_hand(batch):
    loss = Loss(LossConfig(energy=1.0, forces=10.0, charges=2.0))
    total, parts = loss(_prediction(batch), batch)
    # energy: weighted mean over labelled structures of (dE/N)^2
    energy = (1 * 0.1**2 + 2 * 0.2**2) / (1 + 2)
    # forces: sum_atoms w * sum_c d^2 / (3 * sum_atoms w); atom weights 1,1,1,1,2,2,2,2
    forces = (1 * 0.3**2 + 2 * 0.6**2) / (3 * (4 * 1 + 4 * 2))
    # charges: only structure 1 is labelled; errors -0.1 and 0.1
    charges = (0.1**2 + 0.1**2) / 2
    assert parts["energy"].item() == pytest.approx(energy, rel=1e-12)
    assert parts["forces"].item() == pytest.approx(forces, rel=1e-12)
    assert parts["charges"].item() == pytest.approx(charges, rel=1e-12)
    assert total.item() == pytest.approx(energy + 10 * forces + 2 * charges, rel=1e-12)
    assert set(parts) == {"energy", "forces", "charges"}  # no stress/dipole labels


def test_huber_loss_by_hand(batch):
    loss = Loss(LossConfig(kind="huber", huber_delta=0.15, energy=1.0, forces=0.0))
    total, parts = loss(_prediction(batch), batch)
    # |0.1| < delta: 0.5 * 0.1^2; |0.2| > delta: delta * (0.2 - delta / 2)
    expected = (1 * 0.5 * 0.1**2 + 2 * 0.15 * (0.2 - 0.075)) / 3
    assert total.item() == pytest.approx(expected, rel=1e-12)
    assert set(parts) == {"energy"}


def test_loss_is_differentiable_and_ignores_unlabelled(batch):
    pred = _prediction(batch)
    pred[keys.ENERGY].requires_grad_(True)
    total, _ = Loss(LossConfig(energy=1.0, forces=0.0))(pred, batch)
    (grad,) = torch.autograd.grad(total, pred[keys.ENERGY])
    assert grad[1].item() == 0.0  # the unlabelled structure gets no gradient
    assert grad[0].item() != 0.0 and grad[2].item() != 0.0


def test_loss_with_nothing_labelled_is_zero(batch):
    total, parts = Loss(LossConfig(energy=0.0, forces=0.0, dipole=1.0))(_prediction(batch), batch)
    assert total.item() == 0.0 and parts == {}


def test_loss_needs_prediction_for_labelled_property(batch):
    pred = _prediction(batch)
    del pred[keys.FORCES]
    with pytest.raises(ValueError, match=r"batch has forces labels but the model output has no"):
        Loss(LossConfig(forces=1.0))(pred, batch)
    with pytest.raises(ValueError, match=r"loss kind must be 'mse' or 'huber', got 'l1'"):
        Loss(LossConfig(kind="l1"))


def test_metrics_by_hand(batch):
    metrics = Metrics()
    metrics.update(_prediction(batch), batch)
    result = metrics.compute()
    # energy per atom, unweighted, meV/atom: errors 100 and 200
    assert result["energy_mae"] == pytest.approx(150.0)
    assert result["energy_rmse"] == pytest.approx(np.sqrt((100**2 + 200**2) / 2))
    # forces: 24 components (8 atoms x 3), two nonzero errors 300 and 600 meV/Å
    assert result["forces_mae"] == pytest.approx((300 + 600) / 24)
    assert result["forces_rmse"] == pytest.approx(np.sqrt((300**2 + 600**2) / 24))
    # charges: two atoms, errors of 100 me
    assert result["charges_mae"] == pytest.approx(100.0)
    assert result["charges_rmse"] == pytest.approx(100.0)
    assert "stress_mae" not in result and "dipole_mae" not in result
    assert metrics.count == {
        "energy": 2,
        "forces": 24,
        "stress": 0,
        "charges": 2,
        "dipole": 0,
        "bec": 0,
    }


def test_metrics_accumulate_over_batches(batch):
    once, twice = Metrics(), Metrics(keep_values=True)
    once.update(_prediction(batch), batch)
    twice.update(_prediction(batch), batch)
    twice.update(_prediction(batch), batch)
    assert once.compute() == pytest.approx(twice.compute())
    ref, pred = twice.parity("energy")
    np.testing.assert_allclose(pred - ref, [0.1, 0.2, 0.1, 0.2])
    with pytest.raises(ValueError, match=r"parity values were not kept"):
        once.parity("energy")


def test_stress_and_dipole_metrics():
    stress = np.array([[[1.0, 0.1, 0.2], [0.1, 2.0, 0.3], [0.2, 0.3, 3.0]]])
    periodic = _graph(2, {keys.STRESS: stress})
    molecule = _graph(2, {keys.DIPOLE: np.array([[0.0, 0.0, 1.0]])}, periodic=False)
    batch = batch_graphs([periodic, molecule])
    pred_stress = torch.tensor(np.concatenate([stress, np.zeros((1, 3, 3))]))
    pred_stress[0, 0, 1] = pred_stress[0, 1, 0] = 0.1 + 0.006  # xy error 6 meV/Å³
    pred = {
        keys.STRESS: pred_stress,
        keys.DIPOLE: torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.012]], dtype=torch.float64),
    }
    metrics = Metrics()
    metrics.update(pred, batch)
    result = metrics.compute()
    # Voigt components count once each: one error of 6 in 6 components
    assert result["stress_mae"] == pytest.approx(1.0)
    assert result["stress_rmse"] == pytest.approx(np.sqrt(36 / 6))
    # dipole: one error of 12 me·Å in 3 components
    assert result["dipole_mae"] == pytest.approx(4.0)
    assert result["dipole_rmse"] == pytest.approx(np.sqrt(144 / 3))
    table = format_table(result, metrics.count)
    assert "stress     meV/Å³" in table and "dipole     me·Å" in table


def test_metrics_reject_unknown_property():
    with pytest.raises(ValueError, match=r"properties must be among .* got unknown \['energies'\]"):
        Metrics(properties=("energy", "energies"))
