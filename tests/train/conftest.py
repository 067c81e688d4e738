"""Shared fixtures for the training tests: tiny labelled structure files."""

import ase.io
import pytest
import torch

from hybridpot.train.synthetic import toy_nacl_clusters, toy_nacl_structures


@pytest.fixture
def crystal_file(tmp_path):
    """12 two-atom NaCl cells with energy, forces, stress and charges (extxyz)."""
    path = tmp_path / "crystals.xyz"
    ase.io.write(path, toy_nacl_structures(12, seed=1), format="extxyz")
    return path


@pytest.fixture
def mixed_file(tmp_path):
    """Periodic cells and clusters, some labels removed (masks), custom weights."""
    images = toy_nacl_structures(4, seed=2) + toy_nacl_clusters(3, pairs=2, seed=3)
    del images[1].calc.results["forces"]
    del images[2].calc.results["energy"]
    images[3].info["weight"] = 3.0
    images[5].info["charge"] = 1.0
    path = tmp_path / "mixed.xyz"
    ase.io.write(path, images, format="extxyz")
    return path


@pytest.fixture
def assert_same_run():
    """``check(a, b)``: two :class:`TrainResult` ended identically, i.e. the same per-epoch
    history (wall times aside) and bit-identical final weights."""

    def check(a, b):
        def without_times(history):
            return [{k: v for k, v in row.items() if k != "time_s"} for row in history]

        assert without_times(a.history) == without_times(b.history)
        a_state, b_state = a.model.state_dict(), b.model.state_dict()
        assert a_state.keys() == b_state.keys()
        for key, value in a_state.items():
            assert torch.equal(value, b_state[key]), key

    return check
