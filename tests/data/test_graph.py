"""Atomic graphs: construction from ASE, validation, batching and dtype/device moves."""

import ase
import ase.build
import numpy as np
import pytest
import torch

from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms, split_graph


def _structures():
    rng = np.random.default_rng(0)
    bulk = ase.build.bulk("NaCl", "rocksalt", 5.64) * (2, 1, 1)
    bulk.rattle(0.1, seed=1)
    bulk.info["charge"] = 1.0
    slab = ase.Atoms("NaCl", positions=[[0, 0, 0], [1.5, 1.2, 1.0]], cell=[4, 4, 0], pbc=[1, 1, 0])
    molecule = ase.Atoms("ClNaCl", positions=rng.normal(size=(3, 3)) * 1.5)
    return [bulk, slab, molecule]


def test_graph_fields_from_atoms():
    atoms = _structures()[0]
    g = graph_from_atoms(atoms, cutoff=3.5, labels={keys.ENERGY: np.array([1.5])})
    assert g.num_graphs == 1 and g.num_nodes == len(atoms)
    assert g.total_charge.item() == 1.0
    assert g.pbc.tolist() == [[True, True, True]]
    assert g.positions.dtype == torch.float64 and g.numbers.dtype == torch.long
    assert g.labels[keys.ENERGY].item() == 1.5


def test_batch_then_split_round_trips():
    structures = _structures()
    graphs = [
        graph_from_atoms(a, 3.5, labels={keys.FORCES: np.full((len(a), 3), k)})
        for k, a in enumerate(structures)
    ]
    graphs[1].labels[keys.ENERGY] = torch.tensor([2.0], dtype=torch.float64)
    batched = batch_graphs(graphs)
    assert batched.num_graphs == 3 and batched.num_nodes == sum(len(a) for a in structures)
    assert batched.labels[f"{keys.ENERGY}_mask"].tolist() == [False, True, False]
    assert batched.n_atoms.tolist() == [len(a) for a in structures]
    # Edge vectors of the batch are those of the parts, in order.
    np.testing.assert_allclose(
        batched.edge_vectors().numpy(),
        np.concatenate([g.edge_vectors().numpy() for g in graphs]),
        atol=1e-12,
    )
    for original, recovered in zip(graphs, split_graph(batched)):
        for name in ("positions", "numbers", "cell", "pbc", "edge_index", "cell_shifts"):
            assert torch.equal(getattr(original, name), getattr(recovered, name)), name
        assert torch.equal(original.labels[keys.FORCES], recovered.labels[keys.FORCES])


def test_to_dtype_casts_floats_only():
    g = graph_from_atoms(_structures()[0], 3.5).to(dtype=torch.float32)
    assert g.positions.dtype == torch.float32 and g.cell.dtype == torch.float32
    assert g.edge_index.dtype == torch.long and g.pbc.dtype == torch.bool


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.positions.__setitem__((0, 0), np.nan), "positions must be finite"),
        (lambda a: a.positions.__setitem__((1, 2), np.inf), "positions must be finite"),
        (lambda a: a.set_cell([[1, 0, 0], [2, 0, 0], [0, 0, 3]]), "singular"),
    ],
)
def test_bad_atoms_are_rejected_with_a_named_problem(mutate, message):
    atoms = _structures()[0]
    mutate(atoms)
    with pytest.raises(ValueError, match=message):
        graph_from_atoms(atoms, 3.5)


def test_not_atoms_is_a_type_error():
    with pytest.raises(TypeError, match="ase.Atoms"):
        graph_from_atoms(np.zeros((2, 3)), 3.0)
