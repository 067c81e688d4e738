"""Reference energies, scales and neighbour counts from training data."""

import ase
import numpy as np
import pytest
import torch

from hybridpot import keys
from hybridpot.data import graph_from_atoms
from hybridpot.data.statistics import (
    average_num_neighbors,
    dataset_elements,
    dataset_statistics,
    fit_atomic_energies,
    force_rms,
)


def _structure(symbols, energy=None, forces=None, seed=0):
    rng = np.random.default_rng(seed)
    atoms = ase.Atoms(symbols)
    atoms.positions = rng.uniform(0, 4, (len(atoms), 3))
    labels = {}
    if energy is not None:
        labels[keys.ENERGY] = np.array([energy])
    if forces is not None:
        labels[keys.FORCES] = np.asarray(forces, dtype=float)
    return graph_from_atoms(atoms, 3.0, labels=labels)


def test_atomic_energies_are_recovered_exactly():
    e0 = {"H": -13.6, "O": -432.1, "Na": -1.3}
    compositions = ["H2O", "H2O2", "NaOH", "Na2O", "OH", "H2"]
    graphs = [
        _structure(s, energy=sum(e0[a.symbol] for a in ase.Atoms(s)), seed=i)
        for i, s in enumerate(compositions)
    ]
    graphs.append(_structure("Na2"))  # no energy label: ignored
    fitted = fit_atomic_energies(graphs, ["H", "O", "Na", "Cl"])
    for symbol, value in e0.items():
        assert fitted[symbol] == pytest.approx(value, abs=1e-9)
    assert fitted["Cl"] == 0.0  # absent from the data


def test_linearly_dependent_compositions_split_evenly():
    graphs = [_structure("NaCl", energy=-8.0), _structure("Na2Cl2", energy=-16.0)]
    fitted = fit_atomic_energies(graphs, ["Na", "Cl"])
    assert fitted["Na"] == pytest.approx(-4.0) and fitted["Cl"] == pytest.approx(-4.0)


def test_atomic_energy_errors():
    with pytest.raises(ValueError, match=r"no training structure has an energy label"):
        fit_atomic_energies([_structure("NaCl")], ["Na", "Cl"])
    with pytest.raises(ValueError, match=r"holds element 'K', not in the model's elements"):
        fit_atomic_energies([_structure("KCl", energy=1.0)], ["Na", "Cl"])


def test_force_rms_and_scale():
    forces = np.array([[3.0, 0, 0], [0, 4.0, 0]])
    graphs = [_structure("NaCl", energy=-1.0, forces=forces), _structure("NaCl", energy=-2.0)]
    assert force_rms(graphs) == pytest.approx(np.sqrt(25 / 6))
    assert force_rms([graphs[1]]) is None
    stats = dataset_statistics(graphs, ["Na", "Cl"])
    assert stats["energy_scale"] == pytest.approx(np.sqrt(25 / 6))
    # without forces the scale is the spread of the per-atom residual energy
    stats = dataset_statistics([graphs[1], _structure("NaCl", energy=-3.0)], ["Na", "Cl"])
    # fitted E0 sum -2.5 eV: residuals -+0.5 eV over 2 atoms = -+0.25 eV/atom, std 0.25
    assert stats["energy_scale"] == pytest.approx(0.25)


def test_given_atomic_energies_are_kept():
    graphs = [_structure("NaCl", energy=-1.0), _structure("Na2Cl2", energy=-3.0)]
    stats = dataset_statistics(graphs, ["Na", "Cl"], atomic_energies={"Na": 0.0, "Cl": 0.0})
    assert stats["atomic_energies"] == {"Na": 0.0, "Cl": 0.0}


def test_neighbour_count_and_elements():
    # two atoms 2 Å apart with a 3 Å cutoff: one edge each way
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [2, 0, 0]])
    g = graph_from_atoms(atoms, 3.0)
    assert average_num_neighbors([g]) == 1.0
    assert dataset_elements([g, _structure("HO")]) == ["H", "O", "Na", "Cl"]
    assert isinstance(g.numbers, torch.Tensor)
