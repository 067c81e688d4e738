"""Field response: Born effective charges, the acoustic sum rule, field energy and forces.

Z*_i = dM/dr_i by autograd is checked against central differences of the dipole M (which
the model returns), the field forces against differences of the field energy (molecules)
and against Z*ᵀE (periodic cells), and the sum rule sum_i Z*_i = Q·1 on every kind of
structure.
"""

import numpy as np
import pytest
import torch

from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.model import response
from hybridpot.testing.finite_differences import numerical_forces, random_orthogonal
from hybridpot.testing.structures import random_structure

FIELD = np.array([0.03, -0.05, 0.02])  # V/Å

STRUCTURES = {
    "molecule": dict(pbc=(False, False, False), scale=6.0),
    "charged molecule": dict(pbc=(False, False, False), scale=6.0, charge=1.0),
    "bulk": dict(pbc=(True, True, True), scale=5.0),
    "charged bulk": dict(pbc=(True, True, True), scale=5.0, charge=-1.0),
    "slab": dict(pbc=(True, True, False), scale=5.5),
}


def structure(name, seed=3, n=8):
    return random_structure(seed, n=n, **STRUCTURES[name])


def evaluate(model, atoms, **kwargs):
    graph = graph_from_atoms(atoms, model.cutoff)
    return model(graph, **kwargs)


def dipole_of(model, atoms) -> np.ndarray:
    """M = sum q r (positions as given) of any structure, from the model's outputs."""
    out = evaluate(model, atoms, compute_forces=False, compute_stress=False)
    q = out[keys.CHARGES].detach().numpy()
    return q @ atoms.positions


@pytest.mark.parametrize("name", ["molecule", "charged molecule", "bulk", "slab"])
def test_born_effective_charges_equal_finite_differences_of_the_dipole(model, name):
    atoms = structure(name)
    out = evaluate(model, atoms, compute_forces=False, compute_stress=False, compute_bec=True)
    bec = out[keys.BORN_EFFECTIVE_CHARGES].detach().numpy()
    h = 1e-4
    numeric = np.zeros_like(bec)
    for i in range(len(atoms)):
        for c in range(3):
            moved = [atoms.copy(), atoms.copy()]
            moved[0].positions[i, c] += h
            moved[1].positions[i, c] -= h
            numeric[i, :, c] = (dipole_of(model, moved[0]) - dipole_of(model, moved[1])) / (2 * h)
    # Position-dependent charges make Z* differ from q·1 (else the test is vacuous).
    q = out[keys.CHARGES].detach().numpy()
    assert np.abs(bec - q[:, None, None] * np.eye(3)).max() > 1e-3
    assert np.abs(bec - numeric).max() <= 1e-6 * np.abs(bec).max()


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_acoustic_sum_rule(model, name):
    atoms = structure(name, seed=5)
    out = evaluate(model, atoms, compute_forces=False, compute_stress=False, compute_bec=True)
    total = out[keys.BORN_EFFECTIVE_CHARGES].detach().sum(0).numpy()
    charge = atoms.info["charge"]
    np.testing.assert_allclose(total, charge * np.eye(3), rtol=0, atol=1e-10)


def test_molecule_field_energy_is_minus_dipole_dot_field_and_forces_are_its_gradient(model):
    atoms = structure("charged molecule", seed=7)
    plain = evaluate(model, atoms)
    with_field = atoms.copy()
    with_field.info["electric_field"] = FIELD
    out = evaluate(model, with_field)
    dipole = plain[keys.DIPOLE].detach().numpy()[0]
    expected = -dipole @ FIELD
    assert float(out[keys.ENERGY_FIELD][0]) == pytest.approx(expected, rel=1e-12)
    assert float(out[keys.ENERGY][0]) == pytest.approx(
        float(plain[keys.ENERGY][0]) + expected, rel=1e-12
    )

    def energy(a):
        return float(evaluate(model, a, compute_forces=False, compute_stress=False)[keys.ENERGY][0])

    numeric = numerical_forces(energy, with_field, h=1e-4)
    forces = out[keys.FORCES].detach().numpy()
    assert np.abs(forces - numeric).max() <= 1e-6 * np.abs(forces).max()
    # The field part of the forces is Z*ᵀE (its net force Q·E on a charged molecule).
    bec = evaluate(
        model, atoms, compute_forces=False, compute_stress=False, compute_bec=True
    )[keys.BORN_EFFECTIVE_CHARGES].detach().numpy()
    field_forces = forces - plain[keys.FORCES].detach().numpy()
    np.testing.assert_allclose(field_forces, np.einsum("iab,a->ib", bec, FIELD), atol=1e-12)
    np.testing.assert_allclose(field_forces.sum(0), atoms.info["charge"] * FIELD, atol=1e-12)


@pytest.mark.parametrize("name", ["bulk", "charged bulk", "slab"])
def test_periodic_field_adds_z_star_forces_and_no_energy(model, name):
    atoms = structure(name, seed=11)
    plain = evaluate(model, atoms, compute_bec=True)
    with_field = atoms.copy()
    with_field.info["electric_field"] = FIELD
    out = evaluate(model, with_field)
    assert float(out[keys.ENERGY][0]) == float(plain[keys.ENERGY][0])
    assert float(out[keys.ENERGY_FIELD][0]) == 0.0
    bec = plain[keys.BORN_EFFECTIVE_CHARGES].detach().numpy()
    expected = plain[keys.FORCES].detach().numpy() + np.einsum("iab,a->ib", bec, FIELD)
    np.testing.assert_allclose(out[keys.FORCES].detach().numpy(), expected, atol=1e-12)
    # The field leaves the stress alone (no periodic field energy).
    if name != "slab":
        np.testing.assert_array_equal(
            out[keys.STRESS].detach().numpy(), plain[keys.STRESS].detach().numpy()
        )


def test_field_response_rotates_with_the_structure(model):
    rng = np.random.default_rng(2)
    atoms = structure("charged molecule", seed=13)
    atoms.info["electric_field"] = FIELD
    rotation = random_orthogonal(rng, reflect=True)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    turned.info["electric_field"] = rotation @ FIELD
    a = evaluate(model, atoms, compute_bec=True)
    b = evaluate(model, turned, compute_bec=True)
    assert float(b[keys.ENERGY][0]) == pytest.approx(float(a[keys.ENERGY][0]), abs=1e-10)
    np.testing.assert_allclose(
        b[keys.FORCES].detach().numpy(), a[keys.FORCES].detach().numpy() @ rotation.T, atol=1e-10
    )
    za = a[keys.BORN_EFFECTIVE_CHARGES].detach().numpy()
    zb = b[keys.BORN_EFFECTIVE_CHARGES].detach().numpy()
    np.testing.assert_allclose(zb, rotation @ za @ rotation.T, atol=1e-10)


def test_batched_field_and_bec_equal_one_by_one(model):
    images = [structure("molecule", seed=1), structure("bulk", seed=2), structure("slab", seed=4)]
    fields = [FIELD, -FIELD, None]
    graphs = []
    for atoms, field in zip(images, fields):
        if field is not None:
            atoms.info["electric_field"] = field
        graphs.append(graph_from_atoms(atoms, model.cutoff))
    batched = model(batch_graphs(graphs), compute_bec=True)
    start = 0
    for graph in graphs:
        alone = model(graph, compute_bec=True)
        n = graph.num_nodes
        for key in (keys.FORCES, keys.BORN_EFFECTIVE_CHARGES, keys.CHARGES):
            np.testing.assert_allclose(
                batched[key][start : start + n].detach().numpy(),
                alone[key].detach().numpy(),
                atol=1e-11,
            )
        start += n


def test_polarization_is_dipole_over_volume_for_bulk_only(model):
    bulk = structure("bulk", seed=21)
    out = evaluate(model, bulk, compute_forces=False, compute_stress=False)
    expected = dipole_of(model, bulk) / bulk.get_volume()
    np.testing.assert_allclose(out[keys.POLARIZATION][0].detach().numpy(), expected, atol=1e-13)
    for name in ("molecule", "slab"):
        out = evaluate(model, structure(name), compute_forces=False, compute_stress=False)
        assert not out[keys.POLARIZATION].abs().any()


def test_bec_can_be_trained_on(model):
    """compute_bec with create_graph: the BEC depend on the weights (second derivatives)."""
    graph = graph_from_atoms(structure("molecule", seed=8), model.cutoff)
    out = model(graph, compute_forces=True, compute_stress=False, compute_bec=True,
                create_graph=True)
    loss = out[keys.BORN_EFFECTIVE_CHARGES].pow(2).sum()
    weights = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads)


def test_bad_fields_are_rejected(model):
    atoms = structure("molecule")
    for bad in ([1.0, 2.0], [np.nan, 0, 0], "x"):
        atoms.info["electric_field"] = bad
        with pytest.raises(ValueError, match="electric_field"):
            graph_from_atoms(atoms, model.cutoff)


def test_response_helpers_shapes():
    dipole = torch.tensor([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    field = torch.tensor([[0.1, 0.0, 0.0], [0.2, 0.0, 0.0]], dtype=torch.float64)
    pbc = torch.tensor([[False] * 3, [True] * 3])
    energy = response.field_energy(dipole, field, pbc)
    assert energy.tolist() == pytest.approx([-0.1, 0.0])
    volume = torch.tensor([0.0, 8.0], dtype=torch.float64)
    p = response.polarization(dipole, volume, pbc)
    assert p.tolist() == [[0.0, 0.0, 0.0], [0.125, 0.0, 0.0]]
