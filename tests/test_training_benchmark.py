"""benchmarks/training.py: timed training steps on given structures, with the breakdown."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from ase.io import write

from hybridpot.train.synthetic import toy_nacl_structures

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "training.py"


@pytest.fixture(scope="module")
def main():
    """The script's ``main(argv)`` (run as a file: benchmarks/ is not a package)."""
    return runpy.run_path(str(SCRIPT))["main"]


def run_small(main, tmp_path, cells: int, seed: int, *options: str) -> dict:
    """Run the script on the first two of ``cells`` primitive rock-salt cells (one timed
    step, one thread, 3.5 Å) with ``options``; returns the JSON report."""
    path = tmp_path / "cells.extxyz"
    write(path, toy_nacl_structures(cells, seed=seed))
    output = tmp_path / "out.json"
    argv = [
        "--structures", str(path), "--batch-size", "2", "--steps", "1",
        "--threads", "1", "--cutoff", "3.5", *options, "--output", str(output),
    ]  # fmt: skip
    assert main(argv) == 0
    return json.loads(output.read_text())


def test_structures_file_times_both_models_and_the_hybrids_parts(main, tmp_path):
    report = run_small(main, tmp_path, 3, 1, "--warmup", "0", "--breakdown")
    hybrid, twin = report["results"]
    assert (hybrid["model"], twin["model"]) == ("hybrid", "short-range")
    # Two 2-atom primitive cells per batch: only the first --batch-size were used.
    assert hybrid["atoms_per_batch"] == twin["atoms_per_batch"] == 4
    assert hybrid["batch_size"] == 2
    parts = hybrid["breakdown"]
    assert parts["plan_s"] > 0 and parts["coulomb_s"] > 0
    assert parts["screening_s"] > 0  # the default splits the Coulomb energy at the cutoff
    assert "breakdown" not in twin
    assert report["meta"]["command"].startswith("python benchmarks/training.py --structures")


def test_too_few_or_unlabelled_structures_are_refused(main, tmp_path, capsys):
    path = tmp_path / "cells.extxyz"
    write(path, toy_nacl_structures(1))
    with pytest.raises(SystemExit):
        main(["--structures", str(path), "--batch-size", "2", "--output", str(tmp_path / "o")])
    assert "holds 1 structures, fewer than --batch-size 2" in capsys.readouterr().err
    bare = toy_nacl_structures(2)
    for atoms in bare:
        atoms.calc = None
    write(path, bare)
    with pytest.raises(SystemExit):
        main(["--structures", str(path), "--batch-size", "2", "--output", str(tmp_path / "o")])
    assert "structure 0 has no energy and forces" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


SIZES = "--sizes must be 8 k^3 atoms (cubic rock-salt cells), got "


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (["--warmup", "-1"], "--warmup must be at least 0, got -1"),
        (["--profile", "-1"], "--profile must be at least 0, got -1"),
        (["--cutoff", "0"], "--cutoff must be a positive number of Å, got 0.0"),
        (["--cutoff", "nan"], "--cutoff must be a positive number of Å, got nan"),
        (["--sizes", "64", "100"], SIZES + "[100]"),
        (["--sizes", "0"], SIZES + "[0]"),
    ],
)
def test_out_of_range_arguments_are_refused_before_any_work(main, tmp_path, capsys, argv, message):
    output = tmp_path / "out.json"
    with pytest.raises(SystemExit) as error:
        main([*argv, "--output", str(output)])
    assert error.value.code == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_profile_records_busy_time_and_the_costliest_operators(main, tmp_path):
    report = run_small(main, tmp_path, 2, 2, "--warmup", "1", "--profile", "4")
    for row in report["results"]:
        profile = row["profile"]
        assert profile["clock"] == "cpu operators"
        top = profile["top"]
        assert len(top) == 4
        times = [entry["self_s"] for entry in top]
        assert times == sorted(times, reverse=True) and times[-1] > 0
        assert all(entry["calls"] >= 1 and entry["name"] for entry in top)
        # The busy time sums every operator, so it exceeds the four largest alone.
        assert sum(times) < profile["busy_s"] < profile["wall_s"]
