"""The deep-ensemble reference: mean and calibrated spread, save/load, calculator, select."""

import numpy as np
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.calculator import HybridCalculator
from hybridpot.data.dataset import graphs_from_structures
from hybridpot.data.graph import graph_from_atoms
from hybridpot.model import save_model
from hybridpot.testing.structures import random_structure, small_model_config
from hybridpot.uncertainty import (
    EnsembleModel,
    calibrate_ensemble,
    load_ensemble,
    save_ensemble,
    select_structures,
)


@pytest.fixture(scope="module")
def ensemble(data):
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(hybridpot.build_model(small_model_config(readout_mlp=[8], sigma_q=0.0)))
    model = EnsembleModel(members)
    calibrate_ensemble(model, graphs_from_structures(data[1], model.cutoff))
    return model


def test_mean_and_spread_of_the_members(ensemble):
    graph = graph_from_atoms(random_structure(9, n=8, scale=6.0), ensemble.cutoff)
    out = ensemble(graph, compute_stress=False)
    forces = torch.stack([m(graph, compute_stress=False)[keys.FORCES] for m in ensemble.members])
    torch.testing.assert_close(out[keys.FORCES], forces.mean(0))
    spread = forces.var(0, unbiased=False).mean(-1).sqrt()
    torch.testing.assert_close(out[keys.FORCES_UNCERTAINTY], ensemble.alpha2[1].sqrt() * spread)
    for key in (keys.ENERGY_UNCERTAINTY, keys.FORCES_UNCERTAINTY, keys.CHARGES_UNCERTAINTY):
        assert torch.isfinite(out[key]).all() and (out[key] > 0).all()


def test_calibration_makes_validation_errors_unit_scaled(ensemble, data):
    squares = []
    for atoms in data[1]:
        out = ensemble(graph_from_atoms(atoms, ensemble.cutoff), compute_stress=False)
        error = out[keys.ENERGY].numpy() - atoms.get_potential_energy()
        squares.append((error / out[keys.ENERGY_UNCERTAINTY].numpy()) ** 2)
    assert np.mean(squares) == pytest.approx(1.0, rel=1e-6)


def test_save_load_calculator_and_selection(ensemble, data, tmp_path):
    names = []
    for k, member in enumerate(ensemble.members):
        save_model(member, tmp_path / f"m{k}.pt")
        names.append(f"m{k}.pt")
    save_ensemble(ensemble, names, tmp_path / "ensemble.json")
    loaded = load_ensemble(tmp_path / "ensemble.json")
    torch.testing.assert_close(loaded.alpha2, ensemble.alpha2)
    atoms = random_structure(10, n=8, scale=6.0)
    atoms.calc = HybridCalculator(loaded)
    sigma = atoms.calc.get_property("forces_uncertainty", atoms)
    reference = ensemble(graph_from_atoms(atoms, ensemble.cutoff), compute_stress=False)
    np.testing.assert_allclose(sigma, reference[keys.FORCES_UNCERTAINTY].numpy(), rtol=1e-10)
    chosen = select_structures(loaded, graphs_from_structures(data[1], loaded.cutoff), 2)
    assert len(chosen.indices) == 2


def test_bad_ensembles_are_refused(tmp_path):
    torch.manual_seed(0)
    a = hybridpot.build_model(small_model_config())
    b = hybridpot.build_model(small_model_config(cutoff=4.0))
    with pytest.raises(ValueError, match="at least 2 members"):
        EnsembleModel([a])
    with pytest.raises(ValueError, match="member 1 has elements"):
        EnsembleModel([a, b])
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="not a hybridpot ensemble file"):
        load_ensemble(tmp_path / "x.json")
