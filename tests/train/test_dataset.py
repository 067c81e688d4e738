"""Reading labelled structures, label masks, the disk cache, splits and the loader."""

import ase
import ase.io
import ase.stress
import numpy as np
import pytest
import torch

from hybridpot import keys
from hybridpot.data import batch_graphs
from hybridpot.data.dataset import (
    GraphLoader,
    extract_labels,
    load_graphs,
    random_split,
    read_structures,
)
from hybridpot.train.config import DataConfig


def test_labels_from_extxyz(crystal_file):
    images = ase.io.read(crystal_file, ":")
    graphs = load_graphs(crystal_file, cutoff=3.5)
    assert len(graphs) == 12
    for atoms, g in zip(images, graphs, strict=True):
        ref = atoms.calc.results
        assert g.labels[keys.ENERGY].shape == (1,)
        assert float(g.labels[keys.ENERGY][0]) == pytest.approx(ref["energy"], abs=1e-12)
        np.testing.assert_allclose(g.labels[keys.FORCES].numpy(), ref["forces"], atol=1e-12)
        np.testing.assert_allclose(g.labels[keys.CHARGES].numpy(), ref["charges"], atol=1e-12)
        # Voigt -> symmetric (1, 3, 3), checked against ASE's own conversion
        s = g.labels[keys.STRESS][0].numpy()
        expected = ase.stress.voigt_6_to_full_3x3_stress(ref["stress"])
        np.testing.assert_allclose(s, expected, atol=1e-15)
        assert g.labels[keys.WEIGHT].tolist() == [1.0]
        assert keys.DIPOLE not in g.labels  # absent means no label, not zero
        assert g.num_edges > 0


def test_absent_labels_become_masks(mixed_file):
    graphs = load_graphs(mixed_file, cutoff=3.5)
    assert keys.FORCES not in graphs[1].labels
    assert keys.ENERGY not in graphs[2].labels
    assert graphs[3].labels[keys.WEIGHT].tolist() == [3.0]
    assert float(graphs[5].total_charge[0]) == 1.0
    assert keys.STRESS not in graphs[5].labels and keys.DIPOLE in graphs[5].labels
    batch = batch_graphs(graphs)
    assert batch.labels[f"{keys.FORCES}_mask"].tolist() == [1, 0, 1, 1, 1, 1, 1]
    assert batch.labels[f"{keys.ENERGY}_mask"].tolist() == [1, 1, 0, 1, 1, 1, 1]
    assert batch.labels[f"{keys.STRESS}_mask"].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert batch.labels[f"{keys.DIPOLE}_mask"].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_custom_keys_and_info_labels():
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]])
    atoms.info["E_dft"] = -3.5
    atoms.arrays["F_dft"] = np.array([[0.1, 0, 0], [-0.1, 0, 0]])
    atoms.info["Q"] = -1
    atoms.info["w"] = 0.5
    k = DataConfig(energy_key="E_dft", forces_key="F_dft", total_charge_key="Q", weight_key="w")
    labels, charge = extract_labels(atoms, k)
    assert labels[keys.ENERGY].tolist() == [-3.5]
    assert labels[keys.FORCES].shape == (2, 3)
    assert labels[keys.WEIGHT].tolist() == [0.5]
    assert charge == -1.0
    assert set(labels) == {keys.ENERGY, keys.FORCES, keys.WEIGHT}


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (
            lambda a: a.info.update(energy=[1.0, 2.0]),
            r"s\[0\]: label 'energy' \(key 'energy'\) "
            r"must have shape \(\) or \(1,\), got \(2,\)",
        ),
        (
            lambda a: a.arrays.update(forces=np.zeros((2, 2))),
            r"label 'forces' .* must have "
            r"shape \(2, 3\), got \(2, 2\)",
        ),
        (lambda a: a.info.update(stress=np.zeros(5)), r"label 'stress' .* got \(5,\)"),
        (lambda a: a.info.update(energy=float("nan")), r"label 'energy' \(key 'energy'\) has NaN"),
        (
            lambda a: a.info.update(weight=-1.0),
            r"weight \(key 'weight'\) must be one finite "
            r"number >= 0, got \[-1\.0\]",
        ),
        (
            lambda a: a.info.update(charge="plus"),
            r"total charge \(key 'charge'\) must be a "
            r"finite number, got 'plus'",
        ),
        (
            lambda a: a.info.update(charge=float("nan")),
            r"total charge \(key 'charge'\) must be a finite number, got nan",
        ),
    ],
)
def test_bad_labels_are_reported(setup, message):
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [2.8, 0, 0]])
    setup(atoms)
    with pytest.raises(ValueError, match=message):
        extract_labels(atoms, where="s[0]")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"structure file '.*absent\.xyz' does not exist"):
        read_structures(tmp_path / "absent.xyz")
    junk = tmp_path / "junk.xyz"
    junk.write_text("this is not\nan xyz file\n")
    with pytest.raises(ValueError, match=r"cannot read structures from '.*junk\.xyz'"):
        read_structures(junk)


def test_disk_cache_round_trip(crystal_file, tmp_path):
    cache = tmp_path / "cache"
    first = load_graphs(crystal_file, 3.5, cache_dir=cache, dtype=torch.float32)
    files = list(cache.iterdir())
    assert len(files) == 1
    # the cache is plain tensors: loadable without unpickling objects
    torch.load(files[0], weights_only=True)
    second = load_graphs(crystal_file, 3.5, cache_dir=cache, dtype=torch.float32)
    for a, b in zip(first, second, strict=True):
        assert a.positions.dtype == b.positions.dtype == torch.float32
        assert torch.equal(a.edge_index, b.edge_index)
        assert torch.equal(a.cell_shifts, b.cell_shifts)
        assert a.labels.keys() == b.labels.keys()
        for key in a.labels:
            assert torch.equal(a.labels[key], b.labels[key])
    # another cutoff is another cache entry
    load_graphs(crystal_file, 3.0, cache_dir=cache)
    assert len(list(cache.iterdir())) == 2


def test_random_split_is_seeded_and_disjoint():
    train, val, test = random_split(20, (0.2, 0.1), seed=3)
    assert (len(train), len(val), len(test)) == (14, 4, 2)
    assert sorted(train + val + test) == list(range(20))
    assert random_split(20, (0.2, 0.1), seed=3) == [train, val, test]
    assert random_split(20, (0.2, 0.1), seed=4) != [train, val, test]
    assert random_split(5, (0.0, 0.0), seed=0) == [[0, 1, 2, 3, 4], [], []]
    with pytest.raises(ValueError, match=r"cannot split 2 structures .* leaves none"):
        random_split(2, (0.5, 0.5), seed=0)


def test_loader_shuffles_reproducibly_per_epoch(crystal_file):
    graphs = load_graphs(crystal_file, 3.5)
    for i, g in enumerate(graphs):
        g.labels["index"] = torch.tensor([float(i)])
    loader = GraphLoader(graphs, batch_size=5, shuffle=True, seed=7)
    assert len(loader) == 3

    def order(epoch):
        loader.set_epoch(epoch)
        return [int(x) for b in loader for x in b.labels["index"]]

    first = order(0)
    assert sorted(first) == list(range(12))
    assert order(0) == first
    assert order(1) != first
    assert [b.num_graphs for b in loader] == [5, 5, 2]
    fixed = GraphLoader(graphs, batch_size=5)
    assert [int(x) for b in fixed for x in b.labels["index"]] == list(range(12))
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got 0"):
        GraphLoader(graphs, batch_size=0)


def test_bad_structures_are_named_by_file_and_index(tmp_path):
    from hybridpot.electrostatics import Electrostatics
    from hybridpot.train.synthetic import toy_nacl_structures

    images = toy_nacl_structures(4, seed=5)
    images[2].pbc = (False, True, False)
    path = tmp_path / "one_d.xyz"
    ase.io.write(path, images, format="extxyz")
    route = Electrostatics().route
    with pytest.raises(ValueError, match=r"one_d\.xyz\[2\]: pbc \[False, True, False\]"):
        load_graphs(path, 3.5, route=route)
    # The same check on graphs read back from the disk cache.
    cache = tmp_path / "cache"
    load_graphs(path, 3.5, cache_dir=cache)  # a short-range model accepts 1D
    with pytest.raises(ValueError, match=r"one_d\.xyz\[2\]: pbc"):
        load_graphs(path, 3.5, cache_dir=cache, route=route)


def test_coincident_atoms_are_named_by_file_and_index(tmp_path):
    from hybridpot.train.synthetic import toy_nacl_structures

    images = toy_nacl_structures(3, seed=6)
    images[1].positions[1] = images[1].positions[0]
    path = tmp_path / "overlap.xyz"
    ase.io.write(path, images, format="extxyz")
    with pytest.raises(ValueError, match=r"overlap\.xyz\[1\]: atoms 0 and 1 coincide"):
        load_graphs(path, 3.5)


def test_a_truncated_cache_is_rebuilt(crystal_file, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = load_graphs(crystal_file, 3.5, cache_dir=cache)
    (stored,) = cache.glob("*.pt")
    stored.write_bytes(stored.read_bytes()[:100])  # e.g. a full disk
    second = load_graphs(crystal_file, 3.5, cache_dir=cache)
    assert "is not readable" in caplog.text and "rebuilding it" in caplog.text
    assert all(torch.equal(a.positions, b.positions) for a, b in zip(first, second))
    assert load_graphs(crystal_file, 3.5, cache_dir=cache)[0].num_edges == first[0].num_edges


def test_the_old_module_path_still_imports():
    """Scripts and the team's yardsticks import hybridpot.train.dataset."""
    from hybridpot.data import dataset as new
    from hybridpot.train import dataset as old

    assert old.graphs_from_structures is new.graphs_from_structures
    assert old.GraphLoader is new.GraphLoader
