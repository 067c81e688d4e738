"""benchmarks/dimer_tail.py: the c - A/R^4 fit is exact on its own form; bad arguments are
named; on the real dimer files it fits the DFT tail and reads a saved model's."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "dimer_tail.py"
DATA = ROOT.parent / "shared" / "data"


def _module():
    spec = importlib.util.spec_from_file_location("dimer_tail", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_recovers_a_constant_and_an_induction_tail_exactly():
    tail = _module()
    distance = np.array([7.0, 8.5, 10.0, 12.0, 15.0])
    alpha = 4.47  # Å^3: A = alpha k_e / 2 (meV Å^4) for a unit charge
    a = 1000 * alpha * tail.COULOMB_CONSTANT / 2
    energy = 5.5 - a / distance**4
    fit = tail.fit_tail(distance, energy)
    assert fit["c"] == pytest.approx(5.5, abs=1e-9)
    assert fit["alpha"] == pytest.approx(alpha, rel=1e-9)
    assert fit["max_residual"] < 1e-9
    np.testing.assert_allclose(tail.predict_tail(fit, [20.0]), 5.5 - a / 20.0**4, rtol=1e-12)
    # Something the form cannot fit leaves a residual.
    assert tail.fit_tail(distance, energy + np.sin(distance))["max_residual"] > 0.1


def test_bad_inputs_are_named(tmp_path):
    tail = _module()
    with pytest.raises(ValueError, match="at least 3"):
        tail.fit_tail([7.0, 8.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="one length"):
        tail.fit_tail([7.0, 8.0, 9.0], [1.0, 2.0])
    (tmp_path / "m.pt").write_bytes(b"")
    bad_models = (
        ["model.pt"],  # no name
        [f"m={tmp_path / 'absent.pt'}"],
        [f"m={tmp_path / 'm.pt'}", f"m={tmp_path / 'm.pt'}"],
    )
    for models in bad_models:
        done = subprocess.run(
            [sys.executable, str(SCRIPT), "--models", *models, "--data-dir", str(DATA)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and "--models" in done.stderr, (models, done.stderr[-300:])
    for args in (["--min-distance", "0"], ["--model-min-distance", "-1"], ["--type", "7"]):
        done = subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--data-dir", str(DATA)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and args[0] in done.stderr, (args, done.stderr[-300:])


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (real DFT datasets) is absent")
def test_fits_the_dft_tail_and_a_saved_model(tmp_path):
    import torch

    import hybridpot
    from hybridpot.testing.structures import small_model_config

    torch.manual_seed(0)
    config = small_model_config(
        elements=["C", "H", "N"],
        atomic_energies={"C": 0.0, "H": 0.0, "N": 0.0},
        coulomb_accuracy=1e-4,
    )
    path = tmp_path / "model.pt"
    hybridpot.save_model(hybridpot.build_model(config), path)
    polarisable = tmp_path / "induction.pt"
    hybridpot.save_model(hybridpot.build_model({**config, "induction": True}), polarisable)
    output = tmp_path / "tail.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(DATA), "--output", str(output)]
        + ["--models", f"untrained={path}", f"induction={polarisable}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(output.read_text())
    fits = report["dft_fits"]
    # Type 2 (cation + ethane): induction of about ethane's polarisability on a constant.
    for fit in fits.values():
        assert 3.0 < fit["alpha"] < 5.5 and 4.0 < fit["c"] < 8.0 and fit["test_rmse"] < 1.0
    model = report["models"]["untrained"]
    assert len(model["energy"]) == len(report["distance"]) == 13
    assert np.isfinite([model["c"], model["alpha"], model["max_residual"]]).all()
    assert "polarizabilities" not in model
    # Per frame, the prediction is the network's energy plus the Coulomb energy, and the
    # Coulomb energy recomputed apart from the model (Ewald + ASE's neighbour list for the
    # screened pairs) equals the model's own and splits exactly into intra A, B and inter.
    parts = {key: np.array(value) for key, value in model["parts"].items()}
    np.testing.assert_allclose(parts["other"], 0.0)  # latent charges, no induction
    np.testing.assert_allclose(parts["network"] + parts["coulomb"], model["energy"], atol=1e-9)
    assert np.abs(parts["coulomb"]).max() > 0.1  # meV: the check below is not vacuous
    np.testing.assert_allclose(parts["coulomb_check"], parts["coulomb"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(
        parts["intra_a"] + parts["intra_b"] + parts["inter"], parts["coulomb_check"], atol=1e-9
    )
    assert "| R (Å) | DFT | model | error | network | Coulomb | other |" in done.stdout
    # An induction model reports its per-element polarisabilities (initially 0.5 Å³).
    induction = report["models"]["induction"]
    assert np.all(np.array(induction["parts"]["other"]) < 0)  # the induction energy
    np.testing.assert_allclose(
        np.sum([induction["parts"][key] for key in ("network", "coulomb", "other")], axis=0),
        induction["energy"],
        atol=1e-9,
    )
    learned = report["models"]["induction"]["polarizabilities"]
    assert learned == pytest.approx({"C": 0.5, "H": 0.5, "N": 0.5}, abs=1e-6)  # float32
    assert "learned polarisabilities" in done.stdout
    assert report["models"]["DFT"]["alpha"] == pytest.approx(3.79, abs=0.05)
