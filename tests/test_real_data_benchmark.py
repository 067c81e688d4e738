"""benchmarks/real_data.py: skips absent datasets cleanly; its quick mode runs end to end;
the invariant twin matches the parameter budget; stop reasons; MACE rows."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "real_data.py"
DATA = ROOT.parent / "shared" / "data"
#: python of a virtual environment with mace-torch (see benchmarks/_mace_train.py).
MACE_PYTHON = os.environ.get("HYBRIDPOT_MACE_PYTHON")


def _module():
    spec = importlib.util.spec_from_file_location("real_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.mark.parametrize(
    "network, elements",
    [
        ("NETWORK", ["H", "O", "Na", "Cl"]),
        ("NETWORK", ["C", "H", "N", "O"]),
        ("QUICK_NETWORK", ["H", "O", "Na", "Cl"]),
    ],
)
def test_invariant_twin_is_scalar_only_with_the_parameter_budget_of_the_hybrid(network, elements):
    real_data = _module()
    hybrid = {**getattr(real_data, network), **real_data.VARIANTS["hybrid"]}
    twin, twin_params, hybrid_params = real_data.invariant_twin(hybrid, elements)
    assert twin["l_max"] == 0 and twin["hidden_irreps"].endswith("x0e")
    assert "+" not in twin["hidden_irreps"]
    assert twin["radial_mlp"] == hybrid["radial_mlp"] and twin["coulomb"] is True
    assert hybrid_params == real_data.parameter_count(hybrid, elements)
    assert twin_params == real_data.parameter_count(twin, elements)
    assert abs(twin_params - hybrid_params) <= 0.05 * hybrid_params, (twin, twin_params)
    # N is the best multiplicity: one more or one less is no closer.
    n = int(twin["hidden_irreps"].split("x")[0])
    for other in (n - 1, n + 1):
        count = real_data.parameter_count({**twin, "hidden_irreps": f"{other}x0e"}, elements)
        assert abs(count - hybrid_params) >= abs(twin_params - hybrid_params)


def test_stop_reason_names_patience_epochs_or_time_and_refuses_a_run_not_ended():
    stop_reason = _module().stop_reason
    assert stop_reason("patience") == "patience"
    assert stop_reason("epochs") == "max_epochs"
    assert stop_reason("max_time") == "max_time"
    with pytest.raises(RuntimeError, match="'running'"):
        stop_reason("running")


def test_bad_stopping_flags_are_refused_with_their_name(tmp_path):
    for flag, value in (("--patience", "0"), ("--max-epochs", "0"), ("--max-time", "-5")):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), flag, value, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0 and flag in done.stderr, (flag, done.stderr[-500:])


QUICK_RUNS = {
    "charged-dimers": ["charged-dimers/type-0"],
    "nacl-water": ["nacl-water/train-8"],
    "spice-dipeptides": ["spice-dipeptides"],
}


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
@pytest.mark.parametrize("dataset", list(QUICK_RUNS))
def test_quick_mode_trains_and_evaluates_every_default_variant(tmp_path, dataset):
    _, report, table = run(tmp_path, "--quick", "--data-dir", str(DATA), "--datasets", dataset)
    runs = report["runs"]
    expected = {
        f"{run}/{variant}"
        for run in QUICK_RUNS[dataset]
        for variant in ("short-range", "hybrid", "invariant-hybrid")
    }
    if dataset == "spice-dipeptides":
        expected.add("spice-dipeptides/hybrid-mbis")
    assert set(runs) == expected
    for key, row in runs.items():
        test = row["test"]
        for metric in ("energy_rmse", "forces_rmse", "forces_mae", "energy_per_structure_rmse"):
            assert math.isfinite(test[metric]) and test[metric] > 0, (key, metric)
        assert row["n_test"] > 0 and row["train_seconds"] > 0
        assert key.split("/")[0] in table
        # Quick budgets are 1-3 epochs: every run hits its epoch cap (or patience).
        training = row["settings"]["training"]
        assert row["stop_reason"] in ("max_epochs", "patience")
        assert row["converged"] == (row["stop_reason"] == "patience")
        assert row["epochs_run"] == len(row["history"]) <= training["epochs"]
        assert 1 <= row["best_epoch"] <= row["epochs_run"]
        assert training["schedule"]["kind"] == "plateau" and "max_time" not in training
        assert all("val_forces_rmse" in h for h in row["history"])
    assert "not converged (max epochs)" in table
    # Same network for the short-range twin; only the hybrid adds the Coulomb term. The
    # invariant twin: scalar-only, within 5% of the equivariant hybrid's parameters.
    run_key = QUICK_RUNS[dataset][0]
    hybrid, short = runs[f"{run_key}/hybrid"], runs[f"{run_key}/short-range"]
    twin = runs[f"{run_key}/invariant-hybrid"]
    # induction "auto" is on where the training data hold an ion: the type-0 dimer's
    # monomers are fragments of +1 and -1 e. It adds one polarisability per element.
    assert hybrid["induction"] is (dataset == "charged-dimers")
    assert short["induction"] is False and twin["induction"] is hybrid["induction"]
    extra = 4 if hybrid["induction"] else 0  # C, H, N and O
    assert hybrid["parameters"] == short["parameters"] + extra
    assert hybrid["settings"]["model"]["coulomb"] is True
    assert short["settings"]["model"]["coulomb"] is False
    assert twin["settings"]["model"]["l_max"] == 0
    assert abs(twin["parameters"] - hybrid["parameters"]) <= 0.05 * hybrid["parameters"]
    assert report["meta"]["device"] in ("cpu", "cuda")
    # Learning curves next to the JSON: per comparison, and NaCl(aq) against size.
    curves = tmp_path / f"real_data_curves_{run_key.replace('/', '__')}.png"
    assert curves.stat().st_size > 0
    learning_curve = tmp_path / "real_data_nacl_learning_curve.png"
    assert learning_curve.exists() == (dataset == "nacl-water")
    if dataset == "spice-dipeptides":
        # The SPICE runs report charges and dipoles against the MBIS/DFT labels.
        mbis = runs["spice-dipeptides/hybrid-mbis"]
        # Validation molecules come out of the training file, not out of the test set.
        assert all((r["n_train"], r["n_valid"], r["n_test"]) == (12, 4, 6) for r in runs.values())
        assert mbis["counts"]["dipole"] == 3 * 6
        assert mbis["settings"]["training"]["loss"]["charges"] > 0


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_all_variants_pass_their_overrides_and_stop_on_the_time_budget(tmp_path):
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    _, report, table = run(tmp_path, *args, "--models", "all", "--max-time", "1e-3")
    real_data = _module()
    runs = report["runs"]
    assert set(runs) == {f"charged-dimers/type-0/{v}" for v in real_data.ALL_VARIANTS}
    for variant, overrides in real_data.VARIANTS.items():
        row = runs[f"charged-dimers/type-0/{variant}"]
        model = row["settings"]["model"]
        assert {k: model[k] for k in overrides} == overrides, variant
        # A budget spent in the first epoch: one epoch, stopped by time, not converged.
        assert row["settings"]["training"]["max_time"] == 1e-3
        assert row["stop_reason"] == "max_time" and not row["converged"]
        assert row["epochs_run"] == row["best_epoch"] == 1
    assert runs["charged-dimers/type-0/hybrid-wide"]["settings"]["model"]["sigma_q"] == 2.0
    assert "not converged (max time)" in table
    assert all("skipped" in runs[f"charged-dimers/type-0/{v}"] for v in real_data.MACE_VARIANTS)


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_mace_without_its_python_is_reported_skipped_with_the_reason(tmp_path):
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    stdout, report, table = run(tmp_path, *args, "--models", "mace", "mace-les")
    runs = report["runs"]
    assert set(runs) == {"charged-dimers/type-0/mace", "charged-dimers/type-0/mace-les"}
    assert all("--mace-python" in row["skipped"] for row in runs.values())
    assert "skipped" in table and "no --mace-python" in stdout


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
@pytest.mark.skipif(not MACE_PYTHON, reason="HYBRIDPOT_MACE_PYTHON (a mace-torch venv) not set")
def test_mace_is_trained_and_tested_on_the_same_dimer_files(tmp_path):
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    _, report, _ = run(
        tmp_path, *args, "--models", "mace", "mace-les", "--mace-python", MACE_PYTHON
    )
    row = report["runs"]["charged-dimers/type-0/mace"]
    assert row["code"] == "mace" and row["n_train"] == 4 and row["n_test"] == 3
    assert row["n_valid"] == 4  # the dimers validate on their training frames
    assert row["stop_reason"] == "max_epochs" and row["epochs_run"] == len(row["history"]) == 3
    # Counted on the model MACE's calculator loaded for the test errors.
    assert isinstance(row["parameters"], int) and row["parameters"] > 1000
    for metric in ("energy_rmse", "forces_rmse", "forces_mae", "energy_per_structure_rmse"):
        assert math.isfinite(row["test"][metric]) and row["test"][metric] > 0
    les = report["runs"]["charged-dimers/type-0/mace-les"]
    assert ("skipped" in les) != report["meta"]["mace"]["les"]


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_resume_keeps_finished_runs(tmp_path):
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    args += ("--models", "invariant-hybrid")
    _, first, _ = run(tmp_path, *args)
    stdout, second, _ = run(tmp_path, *args, "--resume")
    assert "kept from" in stdout
    assert second["runs"] == first["runs"]


def test_schedule_is_plateau_by_default_or_a_fixed_budget_cosine():
    schedule = _module().schedule
    assert schedule("plateau", 20) == {"kind": "plateau", "factor": 0.5, "min_lr": 1e-5,
                                       "patience": 6}  # fmt: skip
    assert schedule("plateau", 2)["patience"] == 1
    assert schedule("cosine", 20) == {"kind": "cosine", "min_lr": 1e-5}
    with pytest.raises(ValueError, match="schedule"):
        schedule("linear", 20)


def test_cosine_schedule_with_mace_is_refused_by_name(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--schedule", "cosine", "--models", "mace"]
        + ["--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "--schedule cosine" in done.stderr, done.stderr[-500:]


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_cosine_schedule_decays_over_the_epoch_cap_and_the_seed_is_recorded(tmp_path):
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    _, report, _ = run(tmp_path, *args, "--models", "hybrid", "--schedule", "cosine",
                       "--max-epochs", "3", "--patience", "10", "--seed", "3")  # fmt: skip
    row = report["runs"]["charged-dimers/type-0/hybrid"]
    assert row["settings"]["training"]["seed"] == 3
    assert row["settings"]["training"]["schedule"] == {"kind": "cosine", "min_lr": 1e-5}
    lrs = [h["lr"] for h in row["history"]]
    assert len(lrs) == 3 and lrs[0] > lrs[1] > lrs[2] >= 1e-5, lrs


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_extend_continues_a_capped_run_as_if_it_had_never_stopped(tmp_path):
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    args += ("--dimer-types", "0", "--models", "hybrid", "--patience", "10")
    key = "charged-dimers/type-0/hybrid"
    _, capped, _ = run(tmp_path / "a", *args, "--max-epochs", "2", "--extend")
    assert capped["runs"][key]["extended"] is False  # nothing to continue: a fresh run
    _, extended, _ = run(tmp_path / "a", *args, "--max-epochs", "3", "--extend")
    _, straight, _ = run(tmp_path / "b", *args, "--max-epochs", "3")
    row = extended["runs"][key]
    assert row["extended"] is True and straight["runs"][key]["extended"] is False
    assert len(row["history"]) == 3
    assert all(h["time_s"] > 0 for h in row["history"])  # equal-time comparisons need it

    def untimed(history):
        return [{k: v for k, v in h.items() if k != "time_s"} for h in history]

    assert untimed(row["history"][:2]) == untimed(capped["runs"][key]["history"])
    assert untimed(row["history"]) == untimed(straight["runs"][key]["history"])
    assert row["test"] == straight["runs"][key]["test"]
    assert row["train_seconds"] > 0


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_extend_with_other_settings_is_refused_with_the_changed_keys(tmp_path):
    """--patience also sets the schedule's patience, which a resumed run must keep."""
    args = ("--quick", "--data-dir", str(DATA), "--datasets", "charged-dimers")
    args += ("--dimer-types", "0", "--models", "hybrid", "--max-epochs", "2")
    run(tmp_path, *args, "--patience", "3")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--threads", "1", "--output", str(tmp_path / "b.json")]
        + ["--workdir", str(tmp_path / "work"), *args, "--patience", "9", "--extend"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-800:]
    assert "charged-dimers/type-0/hybrid: cannot resume" in done.stderr
    assert "schedule.patience" in done.stderr


MERGE = ROOT / "benchmarks" / "merge_real_data.py"


def _merge_module():
    spec = importlib.util.spec_from_file_location("merge_real_data", MERGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(seed: int, energy: float, epochs: int = 3) -> dict:
    """A finished NaCl(aq) row as real_data.py writes it (numbers made up)."""
    history = [
        {"epoch": e, "val_energy_rmse": energy + 1.0 / e, "val_forces_rmse": 50.0 + 1.0 / e}
        for e in range(1, epochs + 1)
    ]
    return {
        "settings": {"training": {"seed": seed}},
        "n_train": 50,
        "test": {"energy_rmse": energy, "forces_rmse": 50.0},
        "train_seconds": 10.0,
        "parameters": 100,
        "epochs_run": epochs,
        "best_epoch": epochs,
        "stop_reason": "max_time",
        "history": history,
    }


def test_merge_keeps_a_second_seed_as_its_own_variant_and_refuses_a_same_seed_clash():
    merge = _merge_module().merge
    key = "nacl-water/train-50/hybrid"
    first = {"meta": {"command": "a"}, "runs": {key: _row(0, 1.0)}}
    other_seed = {"meta": {"command": "b"}, "runs": {key: _row(1, 2.0)}}
    merged = merge([("a.json", first), ("b.json", other_seed)])
    assert merged["runs"][key]["test"]["energy_rmse"] == 1.0
    assert merged["runs"][f"{key}-seed1"]["test"]["energy_rmse"] == 2.0
    assert [m["file"] for m in merged["meta"]["merged_from"]] == ["a.json", "b.json"]
    later = {"meta": {}, "runs": {key: _row(0, 0.5, epochs=5)}}
    with pytest.raises(ValueError, match=r"'nacl-water/train-50/hybrid'.*a\.json.*c\.json"):
        merge([("a.json", first), ("c.json", later)])
    replaced = merge([("a.json", first), ("c.json", later)], replace=True)
    assert replaced["runs"][key]["epochs_run"] == 5
    skipped = {"meta": {}, "runs": {key: {"skipped": "absent"}, "spice": {"skipped": "absent"}}}
    kept = merge([("s.json", skipped), ("a.json", first), ("t.json", skipped)])
    assert kept["runs"][key]["test"]["energy_rmse"] == 1.0 and "skipped" in kept["runs"]["spice"]
    with pytest.raises(ValueError, match="x.json: not a real_data.py report"):
        merge([("x.json", {"rows": {}})])


def test_merge_script_writes_the_report_table_and_plots(tmp_path):
    key = "nacl-water/train-50/"
    for name, variant, seed in (("h.json", "hybrid", 0), ("s.json", "short-range", 0)):
        report = {"meta": {"device": "cuda"}, "runs": {key + variant: _row(seed, 1.0)}}
        (tmp_path / name).write_text(json.dumps(report))
    (tmp_path / "bad.json").write_text("{")
    output = tmp_path / "out" / "merged.json"
    command = [sys.executable, str(MERGE), "--output", str(output)]
    done = subprocess.run(command + [str(tmp_path / "h.json"), str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    merged = json.loads(output.read_text())
    assert set(merged["runs"]) == {key + "hybrid", key + "short-range"}
    assert merged["meta"]["merged_from"][0]["meta"] == {"device": "cuda"}
    table = output.with_suffix(".md").read_text()
    assert "| nacl-water/train-50 | hybrid | 50 |" in table and "short-range" in table
    assert (output.parent / "merged_curves_nacl-water__train-50.png").stat().st_size > 0
    assert (output.parent / "merged_nacl_learning_curve.png").stat().st_size > 0
    bad = subprocess.run(command + [str(tmp_path / "bad.json")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "inputs: cannot read" in bad.stderr, bad.stderr[-500:]
