"""The last-layer uncertainty: exact features, positivity, symmetry, batching, save/load."""

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from scipy.spatial.transform import Rotation

import hybridpot
from hybridpot import keys
from hybridpot.calculator import HybridCalculator
from hybridpot.data.dataset import graphs_from_structures
from hybridpot.data.graph import batch_graphs, graph_from_atoms
from hybridpot.model import load_model, save_model
from hybridpot.testing.structures import random_structure, small_model_config
from hybridpot.uncertainty import fit_uncertainty, last_layer_features
from hybridpot.uncertainty.features import charge_features, energy_features

UQ_KEYS = (keys.ENERGY_UNCERTAINTY, keys.FORCES_UNCERTAINTY, keys.CHARGES_UNCERTAINTY)


def predict(model, atoms):
    return model(graph_from_atoms(atoms, model.cutoff), compute_stress=False)


def every_kind():
    """A crystal, a vacancy crystal, a slab, a molecule and a charged cell."""
    crystal = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    crystal.rattle(0.05, seed=1)
    vacancy = crystal.repeat((2, 1, 1))
    del vacancy[[0, 5]]
    slab = random_structure(3, n=8, pbc=(True, True, False), scale=6.0)
    molecule = random_structure(4, n=6, pbc=(False, False, False), scale=3.5)
    charged = random_structure(5, n=7, scale=6.0, charge=1.0)
    return {
        "crystal": crystal,
        "vacancy": vacancy,
        "slab": slab,
        "molecule": molecule,
        "charged": charged,
    }


@pytest.mark.parametrize("kind", ["crystal", "vacancy", "slab", "molecule", "charged"])
def test_uncertainties_are_finite_and_positive_on_every_structure_type(fitted, kind):
    atoms = every_kind()[kind]
    out = predict(fitted, atoms)
    assert out[keys.ENERGY_UNCERTAINTY].shape == (1,)
    assert out[keys.FORCES_UNCERTAINTY].shape == (len(atoms),)
    assert out[keys.CHARGES_UNCERTAINTY].shape == (len(atoms),)
    for key in UQ_KEYS:
        value = out[key]
        assert torch.isfinite(value).all() and (value > 0).all(), (kind, key, value)


def test_energy_features_are_the_exact_last_layer_derivative(fitted):
    """E_short_i = phi_i . w + shift[Z_i] exactly, so the LLPR features are the gradient
    of each energy with respect to the last-layer weights (float64, round-off)."""
    network = fitted.network
    atoms = random_structure(7, n=8, scale=6.0)
    graph = graph_from_atoms(atoms, fitted.cutoff)
    out = network(
        graph.numbers,
        graph.edge_index,
        graph.edge_vectors(graph.positions, graph.cell),
        graph.batch,
        1,
        graph.total_charge,
        return_features=True,
    )
    species = network.embedding.species_index(graph.numbers)
    phi = energy_features(network, out[keys.NODE_FEATURES], species)
    last = list(network.energy_readout.mlp.children())[-1]
    energies = phi @ last.weight[:, 0] + network.energy_readout.shift[species]
    torch.testing.assert_close(energies, out[keys.ENERGIES_SHORT], rtol=0, atol=1e-10)


@pytest.mark.parametrize("projection", ["uniform", "weighted"])
def test_charge_features_equal_autograd_derivative(projection):
    """psi_i = dq_i/dv (v: the last-layer weights of the raw charge), against autograd."""
    torch.manual_seed(1)
    model = hybridpot.build_model(small_model_config(readout_mlp=[8], charge_projection=projection))
    network = model.network
    graph = batch_graphs(
        [
            graph_from_atoms(random_structure(s, n=6, scale=6.0, charge=float(s)), model.cutoff)
            for s in (1, 2)
        ]
    )
    vectors = graph.edge_vectors(graph.positions, graph.cell)
    out = network(
        graph.numbers,
        graph.edge_index,
        vectors,
        graph.batch,
        2,
        graph.total_charge,
        return_features=True,
    )
    n = graph.numbers.shape[0]
    psi = charge_features(network, out[keys.NODE_FEATURES][:n].detach(), graph.batch, 2)
    last = list(network.charge_readout.mlp.children())[-1]
    jacobian = []
    for i in range(n):
        (grad,) = torch.autograd.grad(out[keys.CHARGES][i], last.weight, retain_graph=True)
        jacobian.append(grad[:, 0])
    # The projection weights come from the second output column, which column 0 (v)
    # does not touch: the derivative is exact for both projections.
    torch.testing.assert_close(psi, torch.stack(jacobian), rtol=0, atol=1e-10)


def random_rotation(seed):
    return Rotation.random(random_state=seed).as_matrix()


@pytest.mark.parametrize("operation", ["rotation", "reflection", "translation", "permutation"])
def test_uncertainties_are_invariant(fitted, operation):
    atoms = random_structure(11, n=8, scale=6.0)
    moved = atoms.copy()
    order = np.arange(len(atoms))
    if operation in ("rotation", "reflection"):
        matrix = random_rotation(3)
        if operation == "reflection":
            matrix = matrix @ np.diag([1.0, 1.0, -1.0])
        moved.positions = atoms.positions @ matrix.T
        moved.cell = atoms.cell.array @ matrix.T
    elif operation == "translation":
        moved.positions += np.array([0.3, -1.7, 2.2])
    else:
        order = np.random.default_rng(0).permutation(len(atoms))
        moved = atoms[order]
    a, b = predict(fitted, atoms), predict(fitted, moved)
    # float64 throughout; invariance holds to round-off (a relative 1e-10).
    torch.testing.assert_close(
        b[keys.ENERGY_UNCERTAINTY], a[keys.ENERGY_UNCERTAINTY], rtol=1e-10, atol=0
    )
    for key in (keys.FORCES_UNCERTAINTY, keys.CHARGES_UNCERTAINTY):
        torch.testing.assert_close(b[key], a[key][torch.as_tensor(order)], rtol=1e-9, atol=0)


def test_batched_equals_one_by_one(fitted):
    images = [every_kind()[k] for k in ("crystal", "slab", "molecule", "charged")]
    graphs = [
        graph_from_atoms(a, fitted.cutoff, total_charge=a.info.get("charge", 0.0)) for a in images
    ]
    batched = fitted(batch_graphs(graphs), compute_stress=False)
    single = [fitted(g, compute_stress=False) for g in graphs]
    torch.testing.assert_close(
        batched[keys.ENERGY_UNCERTAINTY], torch.cat([s[keys.ENERGY_UNCERTAINTY] for s in single])
    )
    for key in (keys.FORCES_UNCERTAINTY, keys.CHARGES_UNCERTAINTY):
        torch.testing.assert_close(batched[key], torch.cat([s[key] for s in single]))


def test_calibration_makes_validation_errors_unit_scaled(fitted, data):
    """After fitting, mean(e^2 / sigma^2) over the validation forces is 1 (the factor is
    the maximum-likelihood one); atoms without neighbours (sigma exactly 0: their force is
    0 by construction) are left out, as in the fit."""
    _, valid = data
    squares = []
    for atoms in valid:
        out = predict(fitted, atoms)
        error = out[keys.FORCES].detach().numpy() - atoms.get_forces()
        sigma = out[keys.FORCES_UNCERTAINTY].numpy()
        keep = sigma > 0
        squares.append((error[keep] / sigma[keep, None]) ** 2)
    assert np.mean(np.concatenate(squares)) == pytest.approx(1.0, rel=1e-6)


def test_uncertainty_survives_save_and_load(fitted, tmp_path):
    save_model(fitted, tmp_path / "m.pt")
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.config["uncertainty"] is True
    atoms = every_kind()["slab"]
    a, b = predict(fitted, atoms), predict(loaded, atoms)
    for key in UQ_KEYS:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert "uncertainty.alpha2" in payload["state_dict"]


def test_models_without_uncertainty_are_unchanged(fitted):
    torch.manual_seed(0)
    plain = hybridpot.build_model(small_model_config(readout_mlp=[8], sigma_q=0.0))
    assert plain.uncertainty is None and plain.config["uncertainty"] is False
    assert not any(k.startswith("uncertainty.") for k in plain.state_dict())
    out = predict(plain, every_kind()["crystal"])
    assert not any(key in out for key in UQ_KEYS)
    # The fitted model predicts the same energies and forces as its plain twin.
    state = {k: v for k, v in fitted.state_dict().items() if not k.startswith("uncertainty.")}
    plain.load_state_dict(state)
    a, b = predict(plain, every_kind()["crystal"]), predict(fitted, every_kind()["crystal"])
    torch.testing.assert_close(a[keys.FORCES], b[keys.FORCES], rtol=0, atol=0)


def test_calculator_reports_uncertainties(fitted):
    atoms = every_kind()["charged"]
    atoms.calc = HybridCalculator(fitted)
    sigma_e = atoms.calc.get_property("energy_uncertainty", atoms)
    sigma_f = atoms.calc.get_property("forces_uncertainty", atoms)
    sigma_q = atoms.calc.get_property("charges_uncertainty", atoms)
    out = predict(fitted, atoms)
    assert sigma_e == pytest.approx(float(out[keys.ENERGY_UNCERTAINTY][0]), rel=1e-12)
    np.testing.assert_allclose(sigma_f, out[keys.FORCES_UNCERTAINTY].numpy(), rtol=1e-12)
    assert sigma_q.shape == (len(atoms),)


def test_calculator_without_uncertainty_refuses_the_property():
    torch.manual_seed(0)
    atoms = every_kind()["crystal"]
    atoms.calc = HybridCalculator(hybridpot.build_model(small_model_config()))
    with pytest.raises(PropertyNotImplementedError, match="forces_uncertainty"):
        atoms.calc.get_property("forces_uncertainty", atoms)


def test_fit_needs_validation_labels(data):
    torch.manual_seed(0)
    model = hybridpot.build_model(small_model_config(readout_mlp=[8]))
    train, valid = data
    graphs = graphs_from_structures(train, model.cutoff)
    with pytest.raises(ValueError, match="valid is empty"):
        fit_uncertainty(model, graphs, [])
    unlabelled = [a.copy() for a in valid]  # copies carry no calculator: no labels
    with pytest.raises(ValueError, match="no energy labels"):
        fit_uncertainty(model, graphs, graphs_from_structures(unlabelled, model.cutoff))
    assert model.uncertainty is None


def test_descriptor_is_the_mean_energy_feature(fitted):
    graph = graph_from_atoms(every_kind()["crystal"], fitted.cutoff)
    features = last_layer_features(fitted, graph)
    torch.testing.assert_close(
        features["descriptor"][0], features["forces"].mean(0), rtol=1e-12, atol=1e-12
    )


def test_charge_uncertainty_follows_fragments(fitted):
    """With fragments the projection is per fragment: the LLPR charge features are the
    derivative of those projected charges (autograd), and the sigmas stay positive."""
    atoms = random_structure(12, n=8, scale=6.0)
    ids = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    graph = graph_from_atoms(atoms, fitted.cutoff, fragments=(ids, np.array([1.0, -1.0])))
    groups, group_charge = graph.charge_groups
    network = fitted.network
    vectors = graph.edge_vectors(graph.positions, graph.cell)
    out = network(
        graph.numbers,
        graph.edge_index,
        vectors,
        graph.batch,
        1,
        group_charge,
        charge_group=groups,
        return_features=True,
    )
    psi = charge_features(network, out[keys.NODE_FEATURES][:8].detach(), groups, 2)
    last = list(network.charge_readout.mlp.children())[-1]
    jacobian = [
        torch.autograd.grad(out[keys.CHARGES][i], last.weight, retain_graph=True)[0][:, 0]
        for i in range(8)
    ]
    torch.testing.assert_close(psi, torch.stack(jacobian), rtol=0, atol=1e-10)
    sigma = fitted(graph, compute_stress=False)[keys.CHARGES_UNCERTAINTY]
    assert torch.isfinite(sigma).all() and (sigma > 0).all()
