"""torch.compile of the network inside the hybrid model agrees with eager."""

import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.testing.structures import SMALL_CUTOFF, random_structure, small_model_config


@pytest.mark.slow  # inductor compiles C++ kernels: minutes on 2 CPU cores
def test_compiled_model_matches_eager_with_coulomb_on():
    torch.manual_seed(0)
    model = hybridpot.build_model(small_model_config(hidden_irreps="8x0e + 4x1o"))
    graphs = [
        batch_graphs([graph_from_atoms(random_structure(seed=61, n=6), SMALL_CUTOFF)]),
        batch_graphs(
            [
                graph_from_atoms(random_structure(seed=62, n=9, charge=1.0), SMALL_CUTOFF),
                graph_from_atoms(random_structure(seed=63, n=5, pbc=(True, True, False)), 3.5),
            ]
        ),
    ]
    expected = [model(g) for g in graphs]
    model.compile_network()
    state_keys = set(model.state_dict())
    for g, eager in zip(graphs, expected):
        compiled = model(g)
        for key in (keys.ENERGY, keys.FORCES, keys.STRESS, keys.CHARGES):
            assert (compiled[key] - eager[key]).abs().max() < 1e-10, key
    assert set(model.state_dict()) == state_keys
    model.compile_network(enabled=False)
    assert model._compiled_network is None
