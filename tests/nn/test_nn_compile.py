"""torch.compile (inductor, full graph, dynamic shapes) agrees with eager, forces included."""

import pytest
import torch

from hybridpot import keys
from hybridpot.testing.network import (
    evaluate,
    graph,
    random_crystal,
    random_molecule,
    small_network,
)


def energies_charges_forces(net, g):
    pos = g.positions.clone().requires_grad_(True)
    out = evaluate(net, g, g.edge_vectors(pos))
    (forces,) = torch.autograd.grad(-out[keys.ENERGIES_SHORT].sum(), pos)
    return out[keys.ENERGIES_SHORT].detach(), out[keys.CHARGES].detach(), forces


@pytest.mark.slow  # inductor compiles C++ kernels: minutes on a small shared CPU
def test_compiled_network_matches_eager_on_two_sizes():
    torch.manual_seed(0)
    net = small_network(hidden_irreps="8x0e+4x1o", radial_mlp=(8,))
    compiled = torch.compile(net, dynamic=True, fullgraph=True)
    first, second = graph(random_crystal(1)), graph(random_molecule(3, n=5))
    assert first.num_nodes != second.num_nodes and first.num_edges != second.num_edges
    for i, g in enumerate((first, second)):
        # The second structure has other N and E: dynamic shapes must not recompile.
        stance = "fail_on_recompile" if i == 1 else "default"
        with torch.compiler.set_stance(stance):
            got = energies_charges_forces(compiled, g)
        expected = energies_charges_forces(net, g)
        for a, b in zip(got, expected):
            assert (a - b).abs().max() < 1e-12
