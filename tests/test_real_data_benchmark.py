"""benchmarks/real_data.py: skips absent datasets cleanly; its quick mode runs end to end."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "real_data.py"
DATA = ROOT.parent / "shared" / "data"


def run(tmp_path, *args):
    output = tmp_path / "real_data.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--threads", "1", "--output", str(output)]
        + ["--workdir", str(tmp_path / "work"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(output.read_text()), output.with_suffix(".md").read_text()


def test_absent_data_folder_is_skipped_with_a_message(tmp_path):
    stdout, report, table = run(tmp_path, "--quick", "--data-dir", str(tmp_path / "none"))
    assert "nacl-water: skipped" in stdout
    assert set(report["runs"]) == {"charged-dimers", "nacl-water", "spice-dipeptides"}
    assert all("absent" in row["skipped"] for row in report["runs"].values())
    assert "skipped" in table


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_quick_mode_trains_and_evaluates_both_models_on_every_dataset(tmp_path):
    _, report, table = run(tmp_path, "--quick", "--data-dir", str(DATA))
    runs = report["runs"]
    expected = {
        "charged-dimers/type-0/hybrid",
        "charged-dimers/type-0/short-range",
        "nacl-water/train-8/hybrid",
        "nacl-water/train-8/short-range",
        "spice-dipeptides/short-range",
        "spice-dipeptides/hybrid-latent",
        "spice-dipeptides/hybrid-mbis",
    }
    assert set(runs) == expected
    for key, row in runs.items():
        test = row["test"]
        for metric in ("energy_rmse", "forces_rmse", "forces_mae", "energy_per_structure_rmse"):
            assert math.isfinite(test[metric]) and test[metric] > 0, (key, metric)
        assert row["n_test"] > 0 and row["train_seconds"] > 0
        assert key.split("/")[0] in table
    # Same network on both sides of a comparison; only the hybrid adds the Coulomb term.
    assert (
        runs["nacl-water/train-8/hybrid"]["parameters"]
        == (runs["nacl-water/train-8/short-range"]["parameters"])
    )
    assert runs["nacl-water/train-8/hybrid"]["settings"]["model"]["coulomb"] is True
    assert runs["nacl-water/train-8/short-range"]["settings"]["model"]["coulomb"] is False
    # The SPICE runs report charges and dipoles against the MBIS/DFT labels.
    assert runs["spice-dipeptides/hybrid-mbis"]["counts"]["dipole"] == 3 * 6
    assert runs["spice-dipeptides/hybrid-mbis"]["settings"]["training"]["loss"]["charges"] > 0


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_resume_keeps_finished_runs(tmp_path):
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    _, first, _ = run(tmp_path, *args)
    stdout, second, _ = run(tmp_path, *args, "--resume")
    assert "kept from" in stdout
    assert second["runs"] == first["runs"]
