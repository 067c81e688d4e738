"""Skin lists (Verlet) give exactly the pairs and the results of fresh lists."""

import numpy as np
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import graph_from_atoms
from hybridpot.data.verlet import VerletGraphs
from hybridpot.testing.structures import SMALL_CUTOFF, random_structure, small_model_config


def _edge_set(graph):
    i, j = graph.edge_index.tolist()
    shifts = graph.cell_shifts.round().long().tolist()
    return sorted(zip(i, j, map(tuple, shifts)))


@pytest.mark.parametrize(
    "pbc,charge", [((True,) * 3, 1.0), ((True, True, False), 0.0), ((False,) * 3, 0.0)]
)
def test_skin_lists_equal_fresh_lists_along_a_trajectory(pbc, charge):
    torch.manual_seed(0)
    model = hybridpot.build_model(small_model_config(coulomb_accuracy=1e-6)).double()
    atoms = random_structure(seed=7, n=12, pbc=pbc, charge=charge)
    skin = 0.6
    graphs = VerletGraphs(SMALL_CUTOFF, skin=skin)
    rng = np.random.default_rng(1)
    for _ in range(8):
        # 0.1 Å steps: a few reuse the list, then atoms pass half the skin.
        atoms.positions += rng.normal(scale=0.1 / np.sqrt(3), size=atoms.positions.shape)
        graph = graphs(atoms, model.electrostatics)
        fresh = graph_from_atoms(atoms, SMALL_CUTOFF)
        assert _edge_set(graph) == _edge_set(fresh)
        stress = all(pbc)
        out = model(graph, compute_stress=stress)
        ref = model(fresh, compute_stress=stress)
        for key in (keys.ENERGY, keys.FORCES, keys.CHARGES) + ((keys.STRESS,) if stress else ()):
            scale = float(ref[key].abs().max())
            torch.testing.assert_close(out[key], ref[key], rtol=0, atol=1e-12 * scale, msg=key)
    assert 1 < graphs.builds < 8  # reused, and rebuilt once atoms moved half the skin


def test_a_new_cell_or_species_rebuilds():
    atoms = random_structure(seed=3, n=8)
    graphs = VerletGraphs(SMALL_CUTOFF, skin=1.0)
    graphs(atoms)
    graphs(atoms)
    assert graphs.builds == 1
    atoms.set_cell(atoms.cell.array * 1.001, scale_atoms=True)
    graphs(atoms)
    assert graphs.builds == 2
    atoms.numbers[0], atoms.numbers[1] = atoms.numbers[1], atoms.numbers[0]
    graphs(atoms)
    assert graphs.builds == 3


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1"])
def test_skin_must_be_a_length(bad):
    with pytest.raises(ValueError, match="skin must be a finite length >= 0"):
        VerletGraphs(SMALL_CUTOFF, skin=bad)


def test_graph_device_and_calculator_skin_are_checked():
    from hybridpot.data import graph_from_atoms as build

    atoms = random_structure(seed=3, n=4)
    with pytest.raises(ValueError, match="device"):
        build(atoms, SMALL_CUTOFF, device="gpu")
    model = hybridpot.build_model(small_model_config())
    with pytest.raises(ValueError, match="skin must be a finite length >= 0"):
        hybridpot.HybridCalculator(model=model, skin=-0.5)
