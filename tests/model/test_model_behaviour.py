"""Batching, extensivity, total charge, isolated atoms, dtypes and edge cases."""

import ase
import ase.build
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.testing.structures import (
    SMALL_CUTOFF as CUTOFF,
)
from hybridpot.testing.structures import (
    random_structure,
)
from hybridpot.testing.structures import (
    small_model_config as small_config,
)


def test_batched_equals_one_by_one(model):
    structures = [
        random_structure(seed=21, n=8),
        random_structure(seed=22, n=5, charge=2.0),
        random_structure(seed=23, n=6, pbc=(True, True, False)),
        random_structure(seed=24, n=4, pbc=(False, False, False)),
    ]
    graphs = [graph_from_atoms(a, CUTOFF) for a in structures]
    batched = model(batch_graphs(graphs))
    start = 0
    for b, g in enumerate(graphs):
        single = model(g)
        n = g.num_nodes
        assert torch.allclose(batched[keys.ENERGY][b], single[keys.ENERGY][0], atol=1e-10)
        assert torch.allclose(
            batched[keys.FORCES][start : start + n], single[keys.FORCES], atol=1e-10
        )
        assert torch.allclose(
            batched[keys.CHARGES][start : start + n], single[keys.CHARGES], atol=1e-12
        )
        assert torch.allclose(batched[keys.STRESS][b], single[keys.STRESS][0], atol=1e-10)
        start += n


@pytest.mark.parametrize("charge", [0.0, 1.0, -3.0])
def test_total_charge_is_exact(model, charge):
    atoms = random_structure(seed=31, n=7, charge=charge)
    q = model(graph_from_atoms(atoms, CUTOFF))[keys.CHARGES]
    assert abs(q.sum().item() - charge) < 1e-12


def test_supercell_is_extensive(model):
    atoms = random_structure(seed=32, n=6, scale=4.5)
    e1 = model(graph_from_atoms(atoms, CUTOFF))[keys.ENERGY].item()
    big = atoms * (2, 2, 2)
    out = model(graph_from_atoms(big, CUTOFF))
    assert abs(out[keys.ENERGY].item() - 8 * e1) < 1e-7 * abs(8 * e1)


def test_isolated_atom_returns_its_reference_energy(model):
    atoms = ase.Atoms("Na", positions=[[0, 0, 0]])
    out = model(graph_from_atoms(atoms, CUTOFF))
    assert out[keys.ENERGY].item() == pytest.approx(-1.3, abs=1e-12)
    assert out[keys.FORCES].abs().max().item() == 0.0
    assert torch.isfinite(out[keys.CHARGES]).all()


def test_structure_without_edges_is_finite(model):
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [9.0, 0, 0]])  # beyond the cutoff
    out = model(graph_from_atoms(atoms, CUTOFF))
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    # The two Gaussian charges still interact through the Coulomb term.
    assert out[keys.ENERGY_COULOMB].item() != 0.0


def test_coincident_atoms_give_finite_values_or_a_clear_error(model):
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [0, 0, 0]])
    try:
        out = model(graph_from_atoms(atoms, CUTOFF))
    except ValueError as error:
        assert "coincident" in str(error) or "overlap" in str(error)
    else:
        for key, value in out.items():
            assert torch.isfinite(value).all(), key


def test_short_range_twin_has_no_coulomb(model):
    torch.manual_seed(0)
    twin = hybridpot.build_model(small_config(coulomb=False))
    atoms = random_structure(seed=33, n=6)
    out = twin(graph_from_atoms(atoms, CUTOFF))
    assert out[keys.ENERGY_COULOMB].abs().max().item() == 0.0
    assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in model.parameters())


def test_float32_agrees_with_float64(model):
    atoms = random_structure(seed=34, n=8)
    out64 = model(graph_from_atoms(atoms, CUTOFF))
    model32 = hybridpot.build_model(model.config)
    model32.load_state_dict(model.state_dict())
    model32 = model32.to(torch.float32)
    out32 = model32(graph_from_atoms(atoms, CUTOFF, dtype=torch.float32))
    assert out32[keys.ENERGY].dtype == torch.float32
    e64 = out64[keys.ENERGY].item()
    assert abs(out32[keys.ENERGY].item() - e64) < 1e-5 * max(1.0, abs(e64))
    f64 = out64[keys.FORCES].detach()
    assert (out32[keys.FORCES].double() - f64).abs().max() < 1e-4 * max(1.0, f64.abs().max())


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="needs 'cutoff'"):
        hybridpot.build_model({"elements": ["Na"]})
    with pytest.raises(
        ValueError, match="unknown model config key 'cuttoff'; did you mean 'cutoff'"
    ):
        hybridpot.build_model({"elements": ["Na"], "cutoff": 3.0, "cuttoff": 3})
    with pytest.raises(ValueError, match="elements contains unknown chemical symbols"):
        hybridpot.build_model({"elements": ["Xx"], "cutoff": 3.0})
    with pytest.raises(ValueError, match="l_max"):
        hybridpot.build_model({"elements": ["Na"], "cutoff": 3.0, "l_max": 7})
    with pytest.raises(ValueError, match="sigma_q"):
        hybridpot.build_model({"elements": ["Na"], "cutoff": 3.0, "sigma_q": -1})


def test_graph_with_too_small_cutoff_is_refused(model):
    atoms = random_structure(seed=35, n=4)
    with pytest.raises(ValueError, match="smaller than the model's cutoff"):
        model(graph_from_atoms(atoms, CUTOFF - 1.0))


def test_unknown_element_is_named(model):
    atoms = ase.Atoms("NaK", positions=[[0, 0, 0], [2.5, 0, 0]])
    with pytest.raises(ValueError, match="K"):
        model(graph_from_atoms(atoms, CUTOFF))
