"""Atomic writes, checkpoints, RNG states, the weight average, CSV logs and plots."""

import random

import numpy as np
import pytest
import torch

from hybridpot.train.checkpoint import (
    atomic_write_text,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from hybridpot.train.ema import ExponentialMovingAverage
from hybridpot.train.logs import read_csv, write_csv
from hybridpot.train.plots import plot_learning_curves, plot_parity


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "file.txt"
    atomic_write_text(path, "good")

    class Boom(Exception):
        pass

    def failing(handle):
        handle.write(b"half")
        raise Boom

    from hybridpot.train.checkpoint import atomic_write

    with pytest.raises(Boom):
        atomic_write(path, failing)
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary left


def test_rng_states_round_trip():
    torch.manual_seed(1)
    np.random.seed(2)  # noqa: NPY002 (the legacy global state is what is saved)
    random.seed(3)
    random.gauss(0, 1)  # leaves a cached gaussian in Python's state
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))  # noqa: NPY002
    torch.rand(10)
    np.random.rand(10)  # noqa: NPY002
    random.random()
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random(), random.gauss(0, 1))  # noqa: NPY002
    assert torch.equal(expected[0], again[0])
    np.testing.assert_array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    scheduler.step(1.0)
    state = {
        "epoch": 3,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "history": [{"epoch": 1, "train_loss": 0.5}],
    }
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(state, path)
    torch.load(path, weights_only=True)  # plain data only
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["history"] == state["history"]
    assert torch.equal(loaded["model"]["weight"], model.weight)


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*none\.pt' does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"checkpoint_version": 1, "object": object.__new__(ExponentialMovingAverage)}, evil)
    with pytest.raises(ValueError, match=r"refusing to load checkpoint .* pickled Python objects"):
        load_checkpoint(evil)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match=r"is not a hybridpot training checkpoint"):
        load_checkpoint(other)
    # A file that is not a torch file at all is unreadable, not "pickled objects".
    text = tmp_path / "notes.txt"
    text.write_text("just text")
    with pytest.raises(ValueError, match=r"checkpoint '.*notes\.txt' is not readable"):
        load_checkpoint(text)
    newer = tmp_path / "newer.pt"
    torch.save({"checkpoint_version": 99}, newer)
    with pytest.raises(ValueError, match=r"has version 99, newer than this hybridpot"):
        load_checkpoint(newer)


def test_ema_average_and_restore():
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ExponentialMovingAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # warm-up: d = min(0.5, 1/10) = 0.1 -> 0.1 * 0 + 0.9 * 1
    assert ema.shadow["weight"].item() == pytest.approx(0.9)
    ema.update(model)  # d = min(0.5, 2/11) -> 2/11 * 0.9 + 9/11 * 1
    assert ema.shadow["weight"].item() == pytest.approx(2 / 11 * 0.9 + 9 / 11)
    with ema.applied(model):
        assert model.weight.item() == pytest.approx(ema.shadow["weight"].item())
    assert model.weight.item() == 1.0
    copy = ExponentialMovingAverage(model, decay=0.9)
    copy.load_state_dict(ema.state_dict())
    assert copy.num_updates == 2 and copy.decay == 0.5
    assert torch.equal(copy.shadow["weight"], ema.shadow["weight"])
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1\.5"):
        ExponentialMovingAverage(model, decay=1.5)


def test_csv_log_round_trip(tmp_path):
    history = [
        {"epoch": 1, "lr": 0.01, "train_loss": 0.5},
        {"epoch": 2, "lr": 0.01, "train_loss": 0.25, "val_loss": 0.3},
    ]
    write_csv(history, tmp_path / "log.csv")
    assert read_csv(tmp_path / "log.csv") == history
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "epoch,lr,train_loss,val_loss"


def test_plots_are_written(tmp_path):
    history = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.2 / e,
            "val_forces_rmse": 100 / e,
            "val_forces_mae": 80 / e,
        }
        for e in range(1, 4)
    ]
    path = plot_learning_curves(history, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ref = np.linspace(-1, 1, 20)
    path = plot_parity(ref, ref + 0.01, "forces", tmp_path / "parity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"must be non-empty and of equal size"):
        plot_parity(ref, ref[:3], "forces", tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"history must hold at least one epoch"):
        plot_learning_curves([], tmp_path / "none.png")
