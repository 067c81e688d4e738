"""The packed on-demand format: same graphs as the extxyz reader (labels, fragments, applied
fields), same training, safe writes, older versions still read."""

import ase.io
import numpy as np
import pytest
import torch

from hybridpot import keys
from hybridpot.cli import main
from hybridpot.data.dataset import load_graphs
from hybridpot.data.loader import ShardedLoader
from hybridpot.data.packed import PackedDataset, PackWriter, is_packed, pack_structures
from hybridpot.data.statistics import dataset_statistics, largest_net_charge
from hybridpot.train import DataConfig, load_config
from hybridpot.train.logs import read_csv
from hybridpot.train.synthetic import toy_nacl_clusters, toy_nacl_structures
from hybridpot.train.trainer import Trainer

CUTOFF = 3.5


@pytest.fixture
def images():
    """Cells and clusters; a label missing here and there, weights, a charged cluster,
    fragments (a cell and a cluster, after structures without) and an applied field."""
    images = toy_nacl_structures(5, seed=2) + toy_nacl_clusters(3, pairs=2, seed=3)
    del images[0].calc.results["forces"]  # the first structure lacks a label others have
    del images[2].calc.results["energy"]
    del images[6].calc.results["charges"]
    images[3].info["weight"] = 3.0
    images[5].info["charge"] = 1.0
    images[4].arrays["fragment"] = np.array([0, 1])
    images[4].info["fragment_charges"] = [0.25, -0.25]
    images[5].arrays["fragment"] = np.array([1, 1, 0, 0])
    images[5].info["fragment_charges"] = [0.0, 1.0]
    images[7].info["electric_field"] = [0.0, 0.02, -0.01]
    return images


@pytest.fixture
def files(tmp_path, images):
    xyz = tmp_path / "data.xyz"
    ase.io.write(xyz, images, format="extxyz")
    packed = tmp_path / "data.hpk"
    assert main(["pack", str(xyz), "-o", str(packed)]) == 0
    return xyz, packed


def test_packed_graphs_equal_the_extxyz_graphs(files):
    xyz, packed = files
    assert is_packed(packed) and not is_packed(xyz)
    reference = load_graphs(xyz, CUTOFF)
    dataset = PackedDataset(packed, CUTOFF)
    assert len(dataset) == len(reference) == 8
    for expected, graph in zip(reference, [dataset[i] for i in range(len(dataset))]):
        for name in ("positions", "numbers", "cell", "pbc", "total_charge", "edge_index"):
            assert torch.equal(getattr(graph, name), getattr(expected, name)), name
        assert torch.equal(graph.cell_shifts, expected.cell_shifts)
        for name in ("fragment", "fragment_charge", "electric_field"):
            a, b = getattr(graph, name), getattr(expected, name)
            assert (a is None) == (b is None), name
            assert a is None or torch.equal(a, b), name
        assert sorted(graph.labels) == sorted(expected.labels)
        for name, value in expected.labels.items():
            torch.testing.assert_close(graph.labels[name], value, rtol=0, atol=0)
    # Statistics from the arrays equal those from the graphs.
    elements = ["Na", "Cl"]
    a = dataset_statistics(reference, elements)
    b = dataset_statistics(dataset, elements, neighbor_samples=100)
    assert b["avg_num_neighbors"] == pytest.approx(a["avg_num_neighbors"], rel=1e-12)
    assert b["energy_scale"] == pytest.approx(a["energy_scale"], rel=1e-12)
    for s in elements:
        assert b["atomic_energies"][s] == pytest.approx(a["atomic_energies"][s], rel=1e-10)
    assert reference[4].fragment is not None and reference[7].electric_field is not None
    assert largest_net_charge(dataset) == largest_net_charge(reference) == 1.0
    # A view keeps the order it is given.
    view = dataset.subset([5, 1])
    assert len(view) == 2 and torch.equal(view[0].positions, reference[5].positions)
    assert largest_net_charge(view) == 1.0 and largest_net_charge(dataset.subset([4])) == 0.25


def test_version_1_files_are_read_and_newer_ones_refused(tmp_path, images):
    # Version 1 had no fragment or field arrays: a file without them is the same bytes
    # but for the version number in the header.
    plain = [a for a in images if "fragment" not in a.arrays and "electric_field" not in a.info]
    path = tmp_path / "plain.hpk"
    pack_structures(plain, path)
    current = PackedDataset(path, CUTOFF)
    assert not current.has("fragment_count") and not current.has(keys.ELECTRIC_FIELD)
    data = path.read_bytes()
    marker = b'"version": 2'
    assert data.count(marker) == 1
    old = tmp_path / "v1.hpk"
    old.write_bytes(data.replace(marker, b'"version": 1'))
    v1 = PackedDataset(old, CUTOFF)
    for i in range(len(plain)):
        assert torch.equal(v1[i].positions, current[i].positions)
        assert v1[i].fragment is None and v1[i].electric_field is None
    new = tmp_path / "v3.hpk"
    new.write_bytes(data.replace(marker, b'"version": 3'))
    with pytest.raises(ValueError, match=r"has version 3, this hybridpot reads versions \[1, 2\]"):
        PackedDataset(new, CUTOFF)


def test_worker_processes_give_the_same_batches(files):
    _, packed = files
    dataset = PackedDataset(packed, CUTOFF)
    here = ShardedLoader(dataset, 3, shuffle=True, seed=4)
    workers = ShardedLoader(dataset, 3, shuffle=True, seed=4, num_workers=2)
    for a, b in zip(here, workers, strict=True):
        assert torch.equal(a.graph.positions, b.graph.positions)
        assert torch.equal(a.graph.edge_index, b.graph.edge_index)
        assert sorted(a.graph.labels) == sorted(b.graph.labels)


def test_training_on_packed_data_equals_training_on_extxyz(tmp_path, files):
    xyz, packed = files
    common = [
        "quiet=true",
        "plots=false",
        "epochs=2",
        "batch_size=3",
        "dtype=float64",
        "data.val_fraction=0.25",
        "loss.charges=1.0",
        f"model.cutoff={CUTOFF}",
        "model.num_layers=1",
        "model.hidden_irreps='8x0e + 8x1o'",
        "model.l_max=1",
        "model.num_radial=4",
        "model.radial_mlp=[8]",
    ]
    runs = {}
    for name, path in (("xyz", xyz), ("packed", packed)):
        config = load_config(None, [f"data.train={path}", f"output_dir={tmp_path / name}", *common])
        Trainer(config).fit()
        runs[name] = read_csv(tmp_path / name / "log.csv")
    for a, b in zip(runs["xyz"], runs["packed"], strict=True):
        for key in a:
            if key != "time_s":
                assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-12, abs=1e-14), key


def test_writer_is_atomic_and_inputs_are_checked(tmp_path, images):
    path = tmp_path / "out.hpk"
    with pytest.raises(RuntimeError, match="stop"), PackWriter(path) as writer:
        writer.add(images[0], {keys.ENERGY: np.ones(1)}, 0.0)
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary files left
    bad = images[1].copy()
    bad.positions[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"bad\[0\]: positions must be finite"):
        pack_structures([bad], path, source="bad")
    assert not path.exists()
    with pytest.raises(ValueError, match="no structures"):
        pack_structures([], path)
    # Bad fragments and fields are refused, naming the structure; nothing is written.
    fragmented = images[5].copy()
    fragmented.info["fragment_charges"] = [0.0, 0.5]  # sums to 0.5, the cluster holds 1 e
    with pytest.raises(ValueError, match=r"frag\[1\]: .*fragment charges"):
        pack_structures([images[0], fragmented], path, source="frag")
    in_field = images[1].copy()
    in_field.info["electric_field"] = [0.0, float("nan"), 0.1]
    with pytest.raises(ValueError, match=r"field\[0\]: .*electric_field"):
        pack_structures([in_field], path, source="field")
    with pytest.raises(ValueError, match="fragment"), PackWriter(path) as writer:
        writer.add(images[5], {}, 1.0, fragments=(np.array([0, 0, 1]), np.array([1.0, 0.0])))
    assert not path.exists()
    text = tmp_path / "text.hpk"
    text.write_text("not packed")
    with pytest.raises(ValueError, match="is not a packed file"):
        PackedDataset(text, CUTOFF)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PackedDataset(tmp_path / "missing.hpk", CUTOFF)
    assert main(["pack", str(tmp_path / "missing.xyz"), "-o", str(path)]) == 2


def test_pack_reads_fragments_under_the_keys_it_is_given(tmp_path):
    # The LODE dimer files' convention: a split index and one info key per fragment.
    images = toy_nacl_clusters(3, pairs=2, seed=5)
    for k, atoms in enumerate(images):
        atoms.info.update({"indexB": 2, "chargeA": 0.5 * k, "chargeB": -0.5 * k})
    xyz, packed = tmp_path / "dimers.xyz", tmp_path / "dimers.hpk"
    ase.io.write(xyz, images, format="extxyz")
    flags = ["--fragment-charges-key", "chargeA", "chargeB", "--fragment-split-key", "indexB"]
    assert main(["pack", str(xyz), "-o", str(packed), *flags]) == 0
    data_keys = DataConfig(fragment_charges_key=["chargeA", "chargeB"], fragment_split_key="indexB")
    reference = load_graphs(xyz, CUTOFF, data_keys)
    dataset = PackedDataset(packed, CUTOFF)
    for k, expected in enumerate(reference):
        assert torch.equal(dataset[k].fragment, expected.fragment)
        assert torch.equal(dataset[k].fragment, torch.tensor([0, 0, 1, 1]))
        assert dataset[k].fragment_charge.tolist() == [0.5 * k, -0.5 * k]
    # Without the keys the same file has no fragments (and nothing is invented).
    plain = tmp_path / "plain.hpk"
    assert main(["pack", str(xyz), "-o", str(plain)]) == 0
    assert all(PackedDataset(plain, CUTOFF)[k].fragment is None for k in range(3))
