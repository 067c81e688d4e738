"""Chunked, checkpointed message passing gives the unchunked results (values, forces,
stress and the parameter gradients of a force loss), float64, to round-off."""

import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.testing.structures import SMALL_CUTOFF, random_structure, small_model_config


def _graph():
    structures = [random_structure(seed=41, n=10), random_structure(seed=42, n=6, charge=1.0)]
    return batch_graphs([graph_from_atoms(a, SMALL_CUTOFF) for a in structures])


def _force_loss_gradients(model, graph):
    out = model(graph, compute_forces=True, compute_stress=True, create_graph=True)
    loss = (out[keys.FORCES] ** 2).sum() + out[keys.ENERGY].sum() + out[keys.STRESS].sum()
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return out, grads


def test_chunked_messages_equal_unchunked():
    torch.manual_seed(3)
    model = hybridpot.build_model(small_model_config()).double()
    graph = _graph()
    assert graph.num_edges > 40
    ref, ref_grads = _force_loss_gradients(model, graph)
    model.set_edge_chunk(17)  # several chunks, the last one partial
    out, grads = _force_loss_gradients(model, graph)
    for key in (keys.ENERGY, keys.FORCES, keys.STRESS, keys.CHARGES):
        scale = float(ref[key].abs().max())
        torch.testing.assert_close(out[key], ref[key], rtol=0, atol=1e-12 * scale)
    for g, r in zip(grads, ref_grads):
        if r is not None:
            torch.testing.assert_close(g, r, rtol=0, atol=1e-11 * float(r.abs().max() + 1e-30))
    model.set_edge_chunk(None)
    again = model(graph)
    scale = float(ref[keys.FORCES].abs().max())
    forces = ref[keys.FORCES].detach()
    torch.testing.assert_close(again[keys.FORCES], forces, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "1000"])
def test_edge_chunk_must_be_a_positive_integer(bad):
    model = hybridpot.build_model(small_model_config())
    with pytest.raises(ValueError, match="max_edges must be a positive integer or None"):
        model.set_edge_chunk(bad)
