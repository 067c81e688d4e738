"""Shared fixtures for the training tests: tiny labelled structure files."""

import ase.io
import pytest

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
