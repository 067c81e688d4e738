"""Safe save/load: round trip, atomic write, refusal of pickled objects."""

import os
import pickle

import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import graph_from_atoms
from hybridpot.testing.structures import SMALL_CUTOFF as CUTOFF
from hybridpot.testing.structures import random_structure


def test_round_trip_gives_identical_predictions(model, tmp_path):
    path = tmp_path / "model.pt"
    hybridpot.save_model(model, path, metadata={"note": "test"})
    loaded = hybridpot.load_model(path)
    assert loaded.config == model.config and loaded.metadata == {"note": "test"}
    g = graph_from_atoms(random_structure(seed=41, n=6), CUTOFF)
    a, b = model(g), loaded(g)
    for key in (keys.ENERGY, keys.FORCES, keys.STRESS, keys.CHARGES):
        assert torch.equal(a[key], b[key]), key
    # Nothing but the file itself is left in the folder (the write went through a temp file).
    assert os.listdir(tmp_path) == ["model.pt"]


class _Payload:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "config": "{}", "state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(ValueError, match="pickled Python objects"):
        hybridpot.load_model(path)


def test_missing_and_foreign_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hybridpot.load_model(tmp_path / "nope.pt")
    path = tmp_path / "plain.pt"
    with open(path, "wb") as handle:
        pickle.dump([1, 2, 3], handle)
    with pytest.raises(ValueError, match="model file .* is not readable"):
        hybridpot.load_model(path)
    text = tmp_path / "notes.txt"
    text.write_text("just text")
    with pytest.raises(ValueError, match="model file .* is not readable"):
        hybridpot.load_model(text)


def test_newer_format_is_refused(model, tmp_path):
    path = tmp_path / "future.pt"
    hybridpot.save_model(model, path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(ValueError, match="newer than this hybridpot"):
        hybridpot.load_model(path)
