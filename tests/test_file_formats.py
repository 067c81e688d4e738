"""Model files and checkpoints written by every earlier version load in this one.

The fixtures in tests/fixtures/ were written by the code of each format version
(tests/fixtures/make_fixtures.py) and are never regenerated; each load goes through the
upgrade functions of the versions after it.
"""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import hybridpot
from hybridpot.model import io
from hybridpot.train import checkpoint as checkpoint_module
from hybridpot.train import config_from_dict
from hybridpot.train.trainer import Trainer

FIXTURES = Path(__file__).parent / "fixtures"
MODEL_VERSIONS = range(1, io.FORMAT_VERSION + 1)
CHECKPOINT_VERSIONS = range(1, checkpoint_module.CHECKPOINT_VERSION + 1)


def _make_fixtures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_version_has_small_fixtures():
    # Bumping a version without adding its fixtures fails here.
    for version in MODEL_VERSIONS:
        for name in (f"model_v{version}.pt", f"expected_v{version}.json"):
            assert (FIXTURES / name).is_file(), name
    for version in CHECKPOINT_VERSIONS:
        assert (FIXTURES / f"checkpoint_v{version}.pt").is_file()
    for path in FIXTURES.glob("*.pt"):
        assert path.stat().st_size < 200_000, path.name


@pytest.mark.parametrize("version", MODEL_VERSIONS)
def test_old_model_files_load_and_predict_the_same(version):
    path = FIXTURES / f"model_v{version}.pt"
    payload = io.read_model_file(path)
    assert payload["format_version"] == io.FORMAT_VERSION
    model = hybridpot.load_model(path)
    assert model.metadata == {"fixture": version}
    assert model.total_charge_key == "charge"  # what version 1 always read
    # Version 1 read the missing Cl reference energy as 0; the upgrade writes it out.
    assert model.config["atomic_energies"] == {"Na": -1.25, "Cl": 0.0}
    expected = json.loads((FIXTURES / f"expected_v{version}.json").read_text())
    got = _make_fixtures().predictions(model)
    # The network part must be bit-for-bit the same weights; the electrostatics were
    # converged to 1e-8 relative when the fixture was written, so 1e-6 eV absolute.
    assert got["energy_short"] == pytest.approx(expected["energy_short"], abs=1e-10)
    np.testing.assert_allclose(got["charges"], expected["charges"], atol=1e-10)
    assert got["energy"] == pytest.approx(expected["energy"], abs=1e-6)
    np.testing.assert_allclose(got["forces"], expected["forces"], atol=1e-5)


def test_an_upgrade_is_registered_for_every_old_version():
    assert sorted(io._UPGRADES) == list(range(1, io.FORMAT_VERSION))
    assert sorted(checkpoint_module._UPGRADES) == list(
        range(1, checkpoint_module.CHECKPOINT_VERSION)
    )


def test_bad_format_versions_are_named(tmp_path):
    payload = torch.load(FIXTURES / f"model_v{io.FORMAT_VERSION}.pt", weights_only=True)
    for bad in ("2", 0, None):
        payload["format_version"] = bad
        torch.save(payload, tmp_path / "m.pt")
        with pytest.raises(ValueError, match="invalid format_version"):
            hybridpot.load_model(tmp_path / "m.pt")
    del payload["state_dict"]
    payload["format_version"] = io.FORMAT_VERSION
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"is incomplete: it has no \['state_dict'\]"):
        hybridpot.load_model(tmp_path / "m.pt")


@pytest.mark.parametrize("version", CHECKPOINT_VERSIONS)
def test_old_checkpoints_resume(version, tmp_path, monkeypatch):
    state = checkpoint_module.load_checkpoint(FIXTURES / f"checkpoint_v{version}.pt")
    assert state["checkpoint_version"] == checkpoint_module.CHECKPOINT_VERSION
    assert state["epoch"] == 1
    # Resume it for one more epoch in a folder laid out as when it was written.
    monkeypatch.chdir(tmp_path)
    fixtures = _make_fixtures()
    fixtures.write_training_data(fixtures.TRAIN_FILE)
    (tmp_path / "run").mkdir()
    shutil.copy(FIXTURES / f"checkpoint_v{version}.pt", tmp_path / "run" / "checkpoint.pt")
    values = copy.deepcopy(state["config"])
    values["epochs"] = 2
    result = Trainer(config_from_dict(values), resume=True).fit()
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert hybridpot.load_model(tmp_path / "run" / "model.pt").total_charge_key == "charge"


def test_a_copied_model_saves_and_loads(tmp_path):
    # copy.deepcopy (as the calculator makes) turns e3nn's constant Wigner-3j buffers into
    # persistent ones; the file must still load into a fresh model.
    model = hybridpot.load_model(FIXTURES / f"model_v{io.FORMAT_VERSION}.pt")
    hybridpot.save_model(copy.deepcopy(model), tmp_path / "copy.pt")
    loaded = hybridpot.load_model(tmp_path / "copy.pt")
    assert set(loaded.state_dict()) == set(model.state_dict())


def test_a_checkpoint_is_not_a_model_and_back():
    with pytest.raises(ValueError, match="is a training checkpoint, not a model file"):
        hybridpot.load_model(FIXTURES / f"checkpoint_v{checkpoint_module.CHECKPOINT_VERSION}.pt")
    with pytest.raises(ValueError, match="is a model file, not a training checkpoint"):
        checkpoint_module.load_checkpoint(FIXTURES / f"model_v{io.FORMAT_VERSION}.pt")
