"""A small float64 model with a fitted uncertainty, and labelled random structures."""

import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator

import hybridpot
from hybridpot.data.dataset import graphs_from_structures
from hybridpot.derivatives import has_volume
from hybridpot.testing.structures import random_structure, small_model_config
from hybridpot.uncertainty import fit_uncertainty

PBCS = ((True, True, True), (True, True, False), (False, False, False))


def labelled(atoms):
    """``atoms`` labelled by a smooth Lennard-Jones potential, with charges +-1 (toy)."""
    atoms.calc = LennardJones(sigma=2.2, epsilon=0.05, rc=4.0, smooth=True)
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if has_volume(atoms.pbc):
        results["stress"] = atoms.get_stress()
    results["charges"] = np.where(atoms.numbers == 11, 1.0, -1.0)
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def structures(seeds, pbcs=PBCS, n=8):
    return [
        labelled(random_structure(seed, n=n, pbc=pbcs[seed % len(pbcs)], scale=6.0))
        for seed in seeds
    ]


@pytest.fixture(scope="session")
def data():
    """(train images, valid images) of mixed periodicity."""
    return structures(range(12)), structures(range(100, 108))


@pytest.fixture(scope="session")
def fitted(data):
    """An untrained float64 model with a fitted, calibrated uncertainty."""
    torch.manual_seed(0)
    model = hybridpot.build_model(small_model_config(readout_mlp=[8], sigma_q=0.0))
    train, valid = data
    cutoff = model.cutoff
    fit_uncertainty(
        model, graphs_from_structures(train, cutoff), graphs_from_structures(valid, cutoff)
    )
    return model
