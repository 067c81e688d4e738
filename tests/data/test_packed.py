"""The packed on-demand format: same graphs as the extxyz reader, same training, safe writes."""

import ase.io
import numpy as np
import pytest
import torch

from hybridpot import keys
from hybridpot.cli import main
from hybridpot.data.dataset import load_graphs
from hybridpot.data.loader import ShardedLoader
from hybridpot.data.packed import PackedDataset, PackWriter, is_packed, pack_structures
from hybridpot.data.statistics import dataset_statistics
from hybridpot.train import load_config
from hybridpot.train.logs import read_csv
from hybridpot.train.synthetic import toy_nacl_clusters, toy_nacl_structures
from hybridpot.train.trainer import Trainer

CUTOFF = 3.5


@pytest.fixture
def images():
    """Cells and clusters; a label missing here and there, weights, a charged cluster."""
    images = toy_nacl_structures(5, seed=2) + toy_nacl_clusters(3, pairs=2, seed=3)
    del images[0].calc.results["forces"]  # the first structure lacks a label others have
    del images[2].calc.results["energy"]
    del images[6].calc.results["charges"]
    images[3].info["weight"] = 3.0
    images[5].info["charge"] = 1.0
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
    # A view keeps the order it is given.
    view = dataset.subset([5, 1])
    assert len(view) == 2 and torch.equal(view[0].positions, reference[5].positions)


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
    # Inputs the format cannot hold are refused, not dropped.
    fragmented = images[5].copy()
    fragmented.arrays["fragment"] = np.arange(len(fragmented)) % 2
    fragmented.info["fragment_charges"] = [1.0, 0.0]
    with pytest.raises(ValueError, match=r"frag\[0\]: has fragments, which packed files"):
        pack_structures([fragmented], path, source="frag")
    in_field = images[1].copy()
    in_field.info["electric_field"] = [0.0, 0.0, 0.1]
    with pytest.raises(ValueError, match=r"field\[0\]: has an applied electric field"):
        pack_structures([in_field], path, source="field")
    assert not path.exists()
    text = tmp_path / "text.hpk"
    text.write_text("not packed")
    with pytest.raises(ValueError, match="is not a packed file"):
        PackedDataset(text, CUTOFF)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PackedDataset(tmp_path / "missing.hpk", CUTOFF)
    assert main(["pack", str(tmp_path / "missing.xyz"), "-o", str(path)]) == 2
