"""benchmarks/compare_curves.py: equal-epoch and equal-time comparison of two curves."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "compare_curves.py"


@pytest.fixture(scope="module")
def curves():
    spec = importlib.util.spec_from_file_location("compare_curves", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _history(forces, energies, seconds):
    return [
        {"epoch": e, "val_forces_rmse": f, "val_energy_rmse": u, "time_s": t}
        for e, (f, u, t) in enumerate(zip(forces, energies, seconds, strict=True), start=1)
    ]


def _write_csv(path, history):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return str(path)


def test_lead_is_the_first_epoch_from_which_a_stays_below_b(curves):
    # A is below B at epoch 2, above at 3, then below from 4 on: the lead starts at 4.
    a = _history([10, 8, 9, 5, 4, 3], [1, 1, 1, 1, 1, 1], [1] * 6)
    b = _history([10, 9, 8, 6, 5, 4], [2, 2, 2, 0.5, 0.5, 0.5], [1] * 6)
    result = curves.compare(a, b, every=2)
    assert result["force_lead_from"] == 4
    assert result["energy_lead_from"] is None  # A's energy is above B's at the last epoch
    assert [r["epoch"] for r in result["equal_epochs"]] == [2, 4, 6]
    assert result["equal_epochs"][-1]["forces_ratio"] == pytest.approx(3 / 4)
    window = result["window_from_force_lead"]
    assert window["epochs"] == [4, 6]
    assert window["mean_forces_a"] == pytest.approx(4.0)
    assert window["mean_forces_b"] == pytest.approx(5.0)


def test_equal_time_takes_the_last_epoch_each_finished_within_the_shorter_budget(curves):
    # A: 2 s per epoch (6 epochs, 12 s); B: 1 s per epoch (10 epochs, 10 s).
    a = _history(list(range(20, 14, -1)), [1.0] * 6, [2.0] * 6)
    b = _history(list(range(30, 20, -1)), [1.0] * 10, [1.0] * 10)
    same = curves.compare(a, b)["equal_time"]
    assert same["seconds"] == pytest.approx(10.0)
    assert (same["epoch_a"], same["epoch_b"]) == (5, 10)
    assert (same["forces_a"], same["forces_b"]) == (16, 21)
    assert "equal_time_best" not in curves.compare(a, b)  # no val_loss: no best epoch


def test_equal_time_best_is_the_lowest_validation_loss_within_the_budget(curves):
    # A's loss is lowest at epoch 2 (of the 5 epochs within 10 s); epoch 6 is past it.
    a = _history([9, 8, 7, 6, 5, 1], [1.0] * 6, [2.0] * 6)
    for row, loss in zip(a, [5, 1, 3, 4, 2, 0], strict=True):
        row["val_loss"] = loss
    b = _history([9] * 10, [1.0] * 10, [1.0] * 10)
    for row in b:
        row["val_loss"] = 10.0 - row["epoch"]
    best = curves.compare(a, b)["equal_time_best"]
    assert (best["epoch_a"], best["epoch_b"]) == (2, 10)
    assert best["forces_a"] == 8


def test_a_report_row_and_a_log_csv_give_the_same_comparison(curves, tmp_path):
    a = _history([5, 4, 3], [1.0, 0.9, 0.8], [1.0, 1.0, 1.0])
    b = _history([5, 4.5, 4], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5])
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"runs": {"x/hybrid": {"history": a}}}))
    from_report = curves.compare(curves.load_curve(f"{report}#x/hybrid"), b)
    from_csv = curves.compare(curves.load_curve(_write_csv(tmp_path / "log.csv", a)), b)
    assert from_report == from_csv
    assert from_report["force_lead_from"] == 2


def test_script_prints_the_table_and_writes_json(tmp_path):
    import subprocess
    import sys

    a = _write_csv(tmp_path / "a.csv", _history([5, 4, 3], [1, 1, 1], [1, 1, 1]))
    b = _write_csv(tmp_path / "b.csv", _history([5, 5, 5], [1, 1, 1], [1, 1, 1]))
    out = tmp_path / "cmp.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), a, b, "--names", "hybrid", "twin", "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "force lead of hybrid from epoch 2" in done.stdout
    written = json.loads(out.read_text())
    assert written["force_lead_from"] == 2 and written["command"].startswith("python ")


@pytest.mark.parametrize(
    "report, spec_key, message",
    [
        ({"runs": {}}, "x/hybrid", "no run 'x/hybrid'"),
        ({"runs": {"x/hybrid": {"skipped": "absent"}}}, "x/hybrid", "has no history"),
        ({"rows": {}}, "x/hybrid", "not a real_data.py report"),
        (
            {"runs": {"x/hybrid": {"history": [{"epoch": 1, "val_energy_rmse": 1.0}]}}},
            "x/hybrid",
            "no column 'val_forces_rmse'",
        ),
        (
            {
                "runs": {
                    "x/hybrid": {
                        "history": [{"epoch": 1, "val_energy_rmse": "nan", "val_forces_rmse": 1.0}]
                    }
                }
            },
            "x/hybrid",
            "'val_energy_rmse' must be a finite number",
        ),
    ],
)
def test_bad_curves_are_refused_with_what_is_wrong(curves, tmp_path, report, spec_key, message):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match=message):
        curves.load_curve(f"{path}#{spec_key}")


def test_curves_without_a_common_epoch_or_a_bad_step_are_refused(curves):
    a = _history([1.0], [1.0], [1.0])
    b = [{**row, "epoch": 2} for row in _history([1.0], [1.0], [1.0])]
    with pytest.raises(ValueError, match="no epoch in common"):
        curves.compare(a, b)
    with pytest.raises(ValueError, match="every must be a positive"):
        curves.compare(a, a, every=0)
    with pytest.raises(ValueError, match="cannot read"):
        curves.load_curve("/nonexistent/log.csv")
