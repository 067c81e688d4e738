"""The hybrid model with charge_model="qeq": forces and stress against finite differences,
the constraints, batching, training derivatives and old configs.

The Qeq solve runs at a relative residual of 1e-12 and the electrostatics at 1e-8, so
the energy is smooth far below the 1e-6 tolerance of the finite differences (h = 1e-4 Å,
central differences: truncation error ~1e-8 relative).
"""

import numpy as np
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.electrostatics.qeq import self_hardness
from hybridpot.testing.finite_differences import numerical_forces, numerical_stress
from hybridpot.testing.structures import SMALL_CUTOFF as CUTOFF
from hybridpot.testing.structures import random_structure, small_model_config

CASES = {
    "bulk": dict(seed=21, n=8, scale=5.5),
    "charged": dict(seed=22, n=7, charge=-1.0, scale=5.0),
    "slab": dict(seed=23, n=6, pbc=(True, True, False)),
    "molecule": dict(seed=24, n=5, pbc=(False, False, False)),
}


@pytest.fixture(scope="module")
def qeq_model():
    torch.manual_seed(1)
    return hybridpot.build_model(small_model_config(charge_model="qeq", qeq_tolerance=1e-12))


def _energy(model):
    def energy(atoms):
        out = model(graph_from_atoms(atoms, CUTOFF), compute_forces=False, compute_stress=False)
        return float(out[keys.ENERGY][0])

    return energy


# The periodic cases take 0.5-2 min each on a shared 2-core machine (every displaced
# geometry replans the mesh and solves again): slow; the molecule runs by default.
@pytest.mark.parametrize(
    "name",
    [n if n == "molecule" else pytest.param(n, marks=pytest.mark.slow) for n in CASES],
)
def test_forces_and_stress_match_finite_differences(qeq_model, name):
    atoms = random_structure(**CASES[name])
    periodic = bool(atoms.pbc.all())
    out = qeq_model(graph_from_atoms(atoms, CUTOFF), compute_stress=periodic)
    q = out[keys.CHARGES].detach()
    assert q.std() > 1e-3  # the charges are really equilibrated, not trivial
    assert abs(float(q.sum()) - atoms.info["charge"]) < 1e-12
    forces = out[keys.FORCES].detach().numpy()
    expected = numerical_forces(_energy(qeq_model), atoms)
    np.testing.assert_allclose(forces, expected, atol=1e-6 * max(np.abs(expected).max(), 1e-3))
    if periodic:
        stress = out[keys.STRESS_VOIGT].detach().numpy()[0]
        expected = numerical_stress(_energy(qeq_model), atoms)
        np.testing.assert_allclose(stress, expected, atol=1e-6 * max(np.abs(expected).max(), 1e-4))


def test_charges_are_the_constrained_minimum(qeq_model):
    """dE/dq = chi + (J + J_self) q + phi is the same on every atom (the chemical potential),
    and the reported potential is the Coulomb part phi."""
    atoms = random_structure(**CASES["charged"])
    out = qeq_model(graph_from_atoms(atoms, CUTOFF))
    from hybridpot.nn import QeqReadout  # noqa: F401  (the readout exists and is exported)

    graph = graph_from_atoms(atoms, CUTOFF)
    network_out = qeq_model.network(
        graph.numbers, graph.edge_index, graph.edge_vectors(), graph.batch, 1, graph.total_charge
    )
    chi = network_out[keys.ELECTRONEGATIVITY].detach()
    hardness = network_out[keys.HARDNESS].detach()
    assert bool((hardness > 0).all())
    q = out[keys.CHARGES].detach()
    mu = chi + (hardness + self_hardness(qeq_model.sigma_q)) * q + out[keys.POTENTIAL].detach()
    assert float(mu.max() - mu.min()) < 1e-9 * float(mu.abs().max())
    # E = E_short + E_qeq + E_coulomb.
    total = out[keys.ENERGY_SHORT] + out[keys.ENERGY_QEQ] + out[keys.ENERGY_COULOMB]
    torch.testing.assert_close(out[keys.ENERGY], total, rtol=0, atol=1e-10)


def test_field_polarises_a_molecule_through_qeq(qeq_model):
    """A field on a molecule enters the Qeq minimum (chi - r·E): the dipole follows the
    field, the effective chemical potential is constant, and forces still equal finite
    differences of the energy (which includes -M·E)."""
    atoms = random_structure(**CASES["molecule"])
    field = np.array([0.3, -0.2, 0.1])  # V/Å
    plain = qeq_model(graph_from_atoms(atoms, CUTOFF), compute_stress=False)
    atoms.info["electric_field"] = field
    graph = graph_from_atoms(atoms, CUTOFF)
    out = qeq_model(graph, compute_stress=False)
    induced = (out[keys.DIPOLE] - plain[keys.DIPOLE]).detach().numpy()[0]
    assert induced @ field > 0  # the induced dipole points along the field
    network_out = qeq_model.network(
        graph.numbers, graph.edge_index, graph.edge_vectors(), graph.batch, 1, graph.total_charge
    )
    chi = network_out[keys.ELECTRONEGATIVITY].detach()
    hardness = network_out[keys.HARDNESS].detach()
    q = out[keys.CHARGES].detach()
    # POTENTIAL = dE/dq minus the on-site terms: the Coulomb potential minus r·E.
    mu = chi + (hardness + self_hardness(qeq_model.sigma_q)) * q + out[keys.POTENTIAL].detach()
    assert float(mu.max() - mu.min()) < 1e-9 * float(mu.abs().max())
    expected = numerical_forces(_energy(qeq_model), atoms)
    np.testing.assert_allclose(
        out[keys.FORCES].detach().numpy(), expected, atol=1e-6 * np.abs(expected).max()
    )


def test_batch_equals_one_by_one(qeq_model):
    structures = [random_structure(**CASES[n]) for n in ("molecule", "charged", "slab")]
    graphs = [graph_from_atoms(a, CUTOFF) for a in structures]
    batched = qeq_model(batch_graphs(graphs), compute_stress=False)
    single = [qeq_model(g, compute_stress=False) for g in graphs]
    torch.testing.assert_close(
        batched[keys.ENERGY], torch.cat([s[keys.ENERGY] for s in single]), rtol=0, atol=1e-9
    )
    torch.testing.assert_close(
        batched[keys.FORCES], torch.cat([s[keys.FORCES] for s in single]), rtol=0, atol=1e-8
    )
    torch.testing.assert_close(
        batched[keys.CHARGES], torch.cat([s[keys.CHARGES] for s in single]), rtol=0, atol=1e-9
    )


def test_fragment_charges_are_exact(qeq_model):
    atoms = random_structure(**CASES["molecule"])
    atoms.arrays["fragment"] = np.array([0, 0, 1, 1, 1])
    atoms.info["fragment_charges"] = [1.0, -1.0]
    graph = graph_from_atoms(atoms, CUTOFF)
    assert graph.fragment is not None
    q = qeq_model(graph)[keys.CHARGES].detach().numpy()
    np.testing.assert_allclose([q[:2].sum(), q[2:].sum()], [1.0, -1.0], rtol=0, atol=1e-12)


def test_training_derivatives_flow_through_the_solve(qeq_model):
    """A force loss (create_graph) differentiates through the implicit Function twice:
    its parameter gradient equals a finite difference of the loss along a random
    direction of the readout weights."""
    atoms = random_structure(**CASES["bulk"])
    graph = graph_from_atoms(atoms, CUTOFF)
    target = torch.zeros(len(atoms), 3, dtype=torch.float64)
    weight = qeq_model.network.charge_readout.mlp[-1].weight

    def loss():
        out = qeq_model(graph, compute_stress=False, create_graph=True)
        return ((out[keys.FORCES] - target) ** 2).sum()

    (grad,) = torch.autograd.grad(loss(), weight)
    direction = torch.randn_like(weight)
    h = 1e-5
    with torch.no_grad():
        weight += h * direction
    plus = float(loss())
    with torch.no_grad():
        weight -= 2 * h * direction
    minus = float(loss())
    with torch.no_grad():
        weight += h * direction
    numerical = (plus - minus) / (2 * h)
    analytic = float((grad * direction).sum())
    assert abs(analytic - numerical) < 1e-5 * max(abs(numerical), 1e-3)


def test_config_checks_and_old_default():
    config = hybridpot.model.ModelConfig.from_dict(small_model_config())
    assert config.charge_model == "latent"
    with pytest.raises(ValueError, match="charge_model must be one of"):
        hybridpot.model.ModelConfig.from_dict(small_model_config(charge_model="eem"))
    with pytest.raises(ValueError, match="sigma_q > 0"):
        hybridpot.model.ModelConfig.from_dict(small_model_config(charge_model="qeq", sigma_q=0.0))
    with pytest.raises(ValueError, match="coulomb true"):
        hybridpot.model.ModelConfig.from_dict(small_model_config(charge_model="qeq", coulomb=False))
    with pytest.raises(ValueError, match="qeq_tolerance"):
        hybridpot.model.ModelConfig.from_dict(small_model_config(qeq_tolerance=0.0))


def test_save_and_load_round_trip(qeq_model, tmp_path):
    atoms = random_structure(**CASES["charged"])
    path = tmp_path / "qeq.pt"
    hybridpot.save_model(qeq_model, path)
    loaded = hybridpot.load_model(path)
    assert loaded.model_config.charge_model == "qeq"
    graph = graph_from_atoms(atoms, CUTOFF)
    torch.testing.assert_close(
        loaded(graph)[keys.FORCES], qeq_model(graph)[keys.FORCES], rtol=0, atol=1e-12
    )
