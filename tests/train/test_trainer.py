"""End-to-end training on tiny generated data: learning, outputs, exact resume, reload."""

import ase.io
import numpy as np
import pytest
import torch
import yaml

import hybridpot
from hybridpot.data import batch_graphs
from hybridpot.train import ConfigError, Trainer, load_checkpoint, load_config, load_graphs
from hybridpot.train.logs import read_csv
from hybridpot.train.synthetic import toy_nacl_clusters, toy_nacl_structures

# A tiny model: 1 layer, 8 channels; every run below takes a few seconds at most.
TINY = [
    "model.cutoff=3.5",
    "model.num_layers=1",
    "model.hidden_irreps='8x0e + 8x1o'",
    "model.l_max=1",
    "model.num_radial=4",
    "model.radial_mlp=[8]",
]


def _config(tmp_path, data, *overrides):
    return load_config(
        None,
        [
            f"data.train={data}",
            f"output_dir={tmp_path / 'run'}",
            "quiet=true",
            "plots=false",  # plots cost ~0.3 s each; one test checks them
            "batch_size=4",
            "data.val_fraction=0.25",
            *TINY,
            *overrides,
        ],
    )


@pytest.fixture
def cluster_file(tmp_path):
    """Eight non-periodic Na2Cl2 clusters: energy, forces, charges and dipole labels."""
    path = tmp_path / "clusters.xyz"
    ase.io.write(path, toy_nacl_clusters(8, pairs=2, seed=5), format="extxyz")
    return path


def test_training_learns_and_writes_outputs(tmp_path, crystal_file):
    config = _config(
        tmp_path,
        crystal_file,
        "epochs=4",
        "model.coulomb=false",
        "loss.energy=1",  # forces-led: on 12 two-atom cells the loss falls within 4 epochs
        "loss.stress=10",
        "optim.lr=0.01",
        "data.test_fraction=0.2",
        "plots=true",
    )
    result = Trainer(config).fit()
    out = tmp_path / "run"
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    # float32 by default; the loss goes down
    assert next(result.model.parameters()).dtype == torch.float32
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    for key in ("val_energy_rmse", "val_forces_mae", "val_stress_rmse", "train_stress_loss"):
        assert np.isfinite(history[-1][key])
    assert {"energy_mae", "forces_rmse", "stress_mae"} <= set(result.test_metrics)
    for name in (
        "model.pt",
        "checkpoint.pt",
        "config.yaml",
        "log.csv",
        "metrics.json",
        "learning_curves.png",
        "parity_energy.png",
        "parity_forces.png",
    ):
        assert (out / name).is_file(), name
    # the CSV has one row per epoch and matches the history
    rows = read_csv(out / "log.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] == pytest.approx(history[-1]["train_loss"], rel=1e-12)
    # the effective config holds the statistics that went into the model
    effective = yaml.safe_load((out / "config.yaml").read_text())
    assert effective["model"]["elements"] == ["Na", "Cl"]
    assert set(effective["model"]["atomic_energies"]) == {"Na", "Cl"}
    assert effective["model"]["avg_num_neighbors"] > 0
    assert effective["model"]["coulomb"] is False
    # the saved model reloads and predicts exactly what the trained one does
    loaded = hybridpot.load_model(out / "model.pt")
    assert loaded.metadata["training"]["best_epoch"] == result.best_epoch
    assert loaded.metadata["training"]["n_test"] == 2  # round(0.2 * 12)
    graph = batch_graphs(load_graphs(crystal_file, 3.5, dtype=torch.float32)[:3])
    a = result.model(graph)
    b = loaded(graph)
    for key in (hybridpot.keys.ENERGY, hybridpot.keys.FORCES, hybridpot.keys.STRESS):
        assert torch.equal(a[key], b[key]), key


def _interrupt_after(epoch):
    class Interrupted(Exception):
        pass

    def callback(trainer):
        if trainer.epoch == epoch:
            raise Interrupted

    return Interrupted, callback


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_resume_is_bit_identical(tmp_path, cluster_file, schedule, assert_same_run):
    """A run interrupted after epoch 2 and resumed ends exactly where an uninterrupted one
    does: weights, EMA, optimiser, schedule and batch order all continue (hybrid model,
    float64, charges and dipole in the loss)."""
    overrides = [
        "epochs=4",
        "dtype=float64",
        f"schedule.kind={schedule}",
        "schedule.patience=0",
        "loss.charges=1",
        "loss.dipole=1",
        "optim.lr=0.02",
    ]
    full = Trainer(_config(tmp_path / "full", cluster_file, *overrides)).fit()

    config = _config(tmp_path / "part", cluster_file, *overrides)
    Interrupted, callback = _interrupt_after(2)
    with pytest.raises(Interrupted):
        Trainer(config).fit(on_epoch_end=callback)
    assert len(read_csv(tmp_path / "part" / "run" / "log.csv")) == 2
    torch.manual_seed(12345)  # disturb the global RNG: the checkpoint restores it
    resumed = Trainer(config, resume=True).fit()

    assert_same_run(resumed, full)
    # the final checkpoints agree too: optimiser moments, schedule, EMA, best weights
    a = load_checkpoint(tmp_path / "full" / "run" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "part" / "run" / "checkpoint.pt")
    assert a["scheduler"] == b["scheduler"]
    assert a["ema"]["num_updates"] == b["ema"]["num_updates"] > 0
    for name in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][name], b["ema"]["shadow"][name]), name
    for index, moments in a["optimizer"]["state"].items():
        for key, value in moments.items():
            assert torch.equal(value, b["optimizer"]["state"][index][key]), (index, key)
    if schedule == "cosine":
        assert len({row["lr"] for row in full.history}) == 4  # the schedule did act


def test_checkpoint_guards(tmp_path, crystal_file):
    config = _config(tmp_path, crystal_file, "epochs=1", "model.coulomb=false")
    with pytest.raises(ConfigError, match=r"cannot resume: no checkpoint '.*checkpoint\.pt'"):
        Trainer(config, resume=True)
    Trainer(config).fit()
    with pytest.raises(ConfigError, match=r"already holds a checkpoint; pass --resume"):
        Trainer(config)
    changed = _config(tmp_path, crystal_file, "epochs=1", "model.coulomb=false", "optim.lr=0.1")
    with pytest.raises(ConfigError, match=r"cannot resume: config entries \['optim\.lr'\] differ"):
        Trainer(changed, resume=True)
    # more epochs is a legal change: training continues from epoch 1
    longer = _config(tmp_path, crystal_file, "epochs=2", "model.coulomb=false")
    result = Trainer(longer, resume=True).fit()
    assert [row["epoch"] for row in result.history] == [1, 2]
    Trainer(config, overwrite=True)  # overwrite is allowed and clears the old outputs
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    assert not (tmp_path / "run" / "model.pt").exists()


def test_early_stopping(tmp_path, crystal_file):
    # A learning rate too small to change any weight: the validation loss never improves.
    config = _config(
        tmp_path,
        crystal_file,
        "epochs=10",
        "model.coulomb=false",
        "optim.lr=1e-30",
        "optim.ema_decay=null",
        "schedule.kind=constant",
        "early_stopping_patience=2",
    )
    result = Trainer(config).fit()
    assert len(result.history) == 3
    assert result.best_epoch == 1
    assert hybridpot.load_model(tmp_path / "run" / "model.pt").metadata["training"]["stopped_early"]


def test_elements_must_cover_the_data(tmp_path, crystal_file):
    config = _config(tmp_path, crystal_file, "model.elements=[Na]")
    with pytest.raises(ValueError, match=r"the data hold elements \['Cl'\] that model\.elements"):
        Trainer(config)


def test_divergence_is_reported(tmp_path):
    images = toy_nacl_structures(4, seed=0)
    images[0].calc.results["energy"] = 1e30  # absurd label: the loss overflows float32
    path = tmp_path / "bad.xyz"
    ase.io.write(path, images, format="extxyz")
    config = _config(
        tmp_path,
        path,
        "epochs=1",
        "model.coulomb=false",
        "model.atomic_energies={Na: 0.0, Cl: 0.0}",
    )
    with pytest.raises(FloatingPointError, match=r"training loss is (inf|nan) at epoch 1"):
        Trainer(config).fit()
