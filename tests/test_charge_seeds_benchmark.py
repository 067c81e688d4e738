"""benchmarks/charge_seeds.py: trains one model per seed, compares per-element mean charges."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "charge_seeds.py"
DATA = ROOT.parent / "shared" / "data"


def run(tmp_path, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--threads", "1", "--workdir", str(tmp_path / "work")]
        + ["--output", str(tmp_path / "seeds.json"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize(
    "args, flag",
    [
        (("--seeds", "0"), "--seeds"),
        (("--seeds", "1", "1"), "--seeds"),
        (("--frames", "0"), "--frames"),
        (("--saved", "a=/absent/a.pt", "b=/absent/b.pt"), "--saved"),
        (("--saved", "only"), "--saved"),
        (("--saved", "a=x.pt", "b=y.pt", "--seeds", "0", "1"), "--seeds"),
    ],
)
def test_bad_arguments_are_refused_by_name(tmp_path, args, flag):
    done = run(tmp_path, *args)
    assert done.returncode == 2 and flag in done.stderr, done.stderr[-500:]
    assert not (tmp_path / "seeds.json").exists()


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_two_seeds_report_the_spread_of_each_element(tmp_path):
    done = run(tmp_path, "--data", "dimer3", "--seeds", "0", "1", "--max-epochs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "seeds.json").read_text())
    assert report["seeds"] == [0, 1]
    means = {seed: run["mean_charges"] for seed, run in report["runs"].items()}
    # Different seeds are different models: the charges are not copies of each other.
    assert means["0"] != means["1"]
    for symbol, row in report["elements"].items():
        assert row["means"] == [means["0"][symbol], means["1"][symbol]]
        assert row["spread"] == pytest.approx(abs(row["means"][0] - row["means"][1]))
    spreads = [row["spread"] for row in report["elements"].values()]
    assert report["largest_spread_e"] == max(spreads)
    # Signs disagree when two means above 1e-3 e in size have opposite signs.
    opposite = [
        a * b < 0 and min(abs(a), abs(b)) > 1e-3
        for a, b in (row["means"] for row in report["elements"].values())
    ]
    assert report["signs_agree"] == (not any(opposite))
    assert all(r["epochs_run"] <= 2 for r in report["runs"].values())


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_saved_models_are_compared_without_training(tmp_path):
    import torch

    import hybridpot
    from hybridpot.testing.structures import small_model_config

    paths = {}
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = small_model_config(
            elements=["C", "H", "N", "O"], atomic_energies=dict.fromkeys("CHNO", 0.0)
        )
        paths[f"init{seed}"] = tmp_path / f"init{seed}.pt"
        hybridpot.save_model(hybridpot.build_model(config), paths[f"init{seed}"])
    done = run(tmp_path, "--data", "dimer3", "--saved", *(f"{k}={v}" for k, v in paths.items()))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "seeds.json").read_text())
    assert report["seeds"] == ["init0", "init1"] and set(report["runs"]) == set(paths)
    assert all("epochs_run" not in r for r in report["runs"].values())  # nothing trained
    assert not (tmp_path / "work" / "seed-0").exists()
    # Different weights, different means, over the same test frames.
    means = [report["runs"][k]["mean_charges"] for k in paths]
    assert set(means[0]) == {"C", "H", "N", "O"} and means[0] != means[1]
    assert "| element | init0 (e) | init1 (e) | spread (e) |" in done.stdout
