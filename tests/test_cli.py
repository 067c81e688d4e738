"""The hybridpot command: train, evaluate, info and demo, with good and bad input."""

import json
import re

import ase.io
import numpy as np
import pytest
import torch
import yaml

import hybridpot
from hybridpot.cli import main
from hybridpot.train.synthetic import toy_nacl_clusters, toy_nacl_structures

TINY_MODEL = {
    "cutoff": 3.5,
    "num_layers": 1,
    "hidden_irreps": "8x0e + 8x1o",
    "l_max": 1,
    "num_radial": 4,
    "radial_mlp": [8],
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Data, a config and a model trained once through the CLI (shared by the tests)."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "train.xyz"
    ase.io.write(data, toy_nacl_structures(8, seed=11), format="extxyz")
    clusters = root / "clusters.xyz"
    ase.io.write(clusters, toy_nacl_clusters(3, pairs=2, seed=12), format="extxyz")
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"train": str(data), "val_fraction": 0.25},
                "model": TINY_MODEL,
                "epochs": 2,
                "batch_size": 4,
                "output_dir": str(root / "run"),
            }
        )
    )
    code = main(["train", str(config), "--quiet", "model.coulomb=true", "loss.stress=1"])
    assert code == 0
    return {
        "root": root,
        "data": data,
        "clusters": clusters,
        "config": config,
        "model": root / "run" / "model.pt",
    }


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_train_writes_model_and_summary(workspace, capsys):
    out_dir = workspace["root"] / "run2"
    code = main(["train", str(workspace["config"]), f"output_dir={out_dir}", "epochs=1", "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "trained 1 epochs; best epoch 1" in out
    assert "validation errors:" in out and "meV/atom" in out
    model = hybridpot.load_model(out_dir / "model.pt")
    assert model.config["elements"] == ["Na", "Cl"]
    assert (out_dir / "config.yaml").is_file()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["optim.lrr=1"], r"unknown config key 'optim\.lrr'; did you mean 'optim\.lr'\?"),
        (["epochs=three"], r"config key 'epochs' must be int, got 'three'"),
        (["data.train=missing.xyz"], r"'data\.train': file 'missing\.xyz' does not exist"),
        (["model.num_layers=0"], r"num_layers must be a positive integer, got 0"),
        (["model.colomb=false"], r"unknown model config key 'colomb'; did you mean 'coulomb'\?"),
        (["epochs"], r"override 'epochs' must look like key=value"),
        ([], r"already holds a checkpoint; pass --resume"),
    ],
)
def test_train_bad_input(workspace, capsys, arguments, message):
    code = main(["train", str(workspace["config"]), *arguments])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith("hybridpot train: error: ")
    assert re.search(message, line), line


def test_train_missing_config(tmp_path, capsys):
    assert main(["train", str(tmp_path / "none.yaml")]) == 2
    assert re.search(r"error: config file '.*none\.yaml' does not exist$", _error_line(capsys))


def test_train_resume_and_interrupt(workspace, capsys, monkeypatch):
    out_dir = workspace["root"] / "run3"
    base = ["train", str(workspace["config"]), f"output_dir={out_dir}", "--quiet"]
    assert main([*base, "epochs=1"]) == 0
    # --resume with more epochs continues the checkpoint: epoch 2 only is trained
    assert main([*base, "epochs=2", "--resume"]) == 0
    assert "trained 2 epochs" in capsys.readouterr().out
    assert main([*base, "epochs=2", "optim.lr=0.5", "--resume"]) == 2
    assert "cannot resume: config entries ['optim.lr'] differ" in _error_line(capsys)

    from hybridpot.train.trainer import Trainer

    def interrupted(self, on_epoch_end=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", interrupted)
    assert main([*base, "epochs=3", "--resume"]) == 130
    err = capsys.readouterr().err
    assert "hybridpot train: interrupted" in err and "--resume" in err and "Traceback" not in err


def test_resume_from_the_config_the_run_wrote(workspace, capsys):
    """The run folder's config.yaml (derived model entries filled in) resumes the run
    exactly as the original config does, and leaves the original resumable too."""
    runs = {name: workspace["root"] / f"resume-{name}" for name in ("original", "written")}
    for out_dir in runs.values():
        args = ["train", str(workspace["config"]), f"output_dir={out_dir}", "epochs=1"]
        assert main([*args, "--quiet"]) == 0
    original = ["train", str(workspace["config"]), f"output_dir={runs['original']}"]
    assert main([*original, "epochs=2", "--resume", "--quiet"]) == 0
    written = runs["written"] / "config.yaml"
    assert "atomic_energies" in written.read_text()
    assert main(["train", str(written), "epochs=2", "--resume", "--quiet"]) == 0
    weights = [hybridpot.load_model(d / "model.pt").state_dict() for d in runs.values()]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    # the checkpoint still holds the original model section
    back = ["train", str(workspace["config"]), f"output_dir={runs['written']}", "epochs=3"]
    assert main([*back, "--resume", "--quiet"]) == 0
    assert "trained 3 epochs" in capsys.readouterr().out
    # an edited model entry is still a different run
    edited = yaml.safe_load(written.read_text())
    edited["model"]["atomic_energies"]["Na"] += 1.0
    written.write_text(yaml.safe_dump(edited))
    assert main(["train", str(written), "epochs=4", "--resume"]) == 2
    assert "cannot resume: config entries ['model'] differ" in _error_line(capsys)


def test_evaluate_prints_table_and_writes_predictions(workspace, capsys, tmp_path):
    output = tmp_path / "predictions.xyz"
    code = main(
        ["evaluate", str(workspace["model"]), str(workspace["data"]), "-o", str(output), "--quiet"]
    )
    assert code == 0
    out = capsys.readouterr().out
    for text in (
        "8 structures",
        "energy     meV/atom",
        "forces     meV/Å",
        "stress     meV/Å³",
        "charges    me",
        f"predictions written to {output}",
    ):
        assert text in out, text
    # the written energies and forces are the model's predictions
    model = hybridpot.load_model(workspace["model"])
    images = ase.io.read(output, ":")
    reference = ase.io.read(workspace["data"], ":")
    assert len(images) == 8
    from hybridpot.data import graph_from_atoms

    for atoms, ref in zip(images, reference, strict=True):
        graph = graph_from_atoms(ref, model.cutoff, dtype=torch.float32)
        pred = model(graph)
        assert atoms.get_potential_energy() == pytest.approx(
            float(pred["energy"][0].detach()), abs=1e-5
        )
        np.testing.assert_allclose(atoms.get_forces(), pred["forces"].detach(), atol=1e-5)
        np.testing.assert_allclose(atoms.get_charges(), pred["charges"].detach(), atol=1e-6)
        assert atoms.info["energy_short"] + atoms.info["energy_coulomb"] == pytest.approx(
            atoms.get_potential_energy(), abs=1e-4
        )
        assert atoms.info["ref_energy"] == pytest.approx(ref.get_potential_energy())
        np.testing.assert_allclose(atoms.arrays["ref_forces"], ref.get_forces())


def test_evaluate_molecules_reports_dipole(workspace, capsys):
    assert main(["evaluate", str(workspace["model"]), str(workspace["clusters"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dipole     me·Å" in out and "stress" not in out


def test_evaluate_bec_with_fragments_and_a_field(workspace, capsys, tmp_path):
    """--bec writes Z* (sum rule per structure); fragments read under the dimer keys."""
    images = ase.io.read(workspace["clusters"], ":")
    for atoms in images:
        atoms.info.update(split=2, qa=0.5, qb=-0.5, field=[0.0, 0.0, 0.1])
    data = tmp_path / "dimers.xyz"
    ase.io.write(data, images, format="extxyz")
    out = tmp_path / "pred.xyz"
    arguments = ["evaluate", str(workspace["model"]), str(data), "-o", str(out), "--quiet"]
    arguments += ["--bec", "--fragment-split-key", "split", "--fragment-charges-key", "qa", "qb"]
    arguments += ["--electric-field-key", "field"]
    assert main(arguments) == 0
    for atoms in ase.io.read(out, ":"):
        z = atoms.calc.results["born_effective_charges"].reshape(-1, 3, 3)
        np.testing.assert_allclose(z.sum(0), 0.0, atol=1e-6)  # 8 decimals in the file
        q = atoms.get_charges()
        assert q[:2].sum() == pytest.approx(0.5, abs=1e-6)
        assert atoms.info["energy_field"] != 0.0


def test_evaluate_reads_fragments_with_the_keys_the_model_was_trained_with(
    workspace, capsys, tmp_path
):
    """Trained on fragments under other keys (the LODE dimer convention), the model file
    remembers them: evaluate without fragment flags still holds each fragment's charge."""
    images = ase.io.read(workspace["clusters"], ":")
    for atoms in images:
        atoms.info.update(split=2, qa=0.5, qb=-0.5)
    data = tmp_path / "dimers.xyz"
    ase.io.write(data, images, format="extxyz")
    run = tmp_path / "run"
    overrides = [f"data.train={data}", "data.val_fraction=0", f"output_dir={run}", "epochs=1"]
    overrides += ["data.fragment_split_key=split", "data.fragment_charges_key=[qa, qb]"]
    overrides += ["model.coulomb=true", "--quiet"]
    assert main(["train", str(workspace["config"]), *overrides]) == 0
    assert hybridpot.load_model(run / "model.pt").fragment_keys == {
        "fragment_key": "fragment",
        "fragment_charges_key": ["qa", "qb"],
        "fragment_split_key": "split",
    }
    assert main(["info", str(run / "model.pt")]) == 0
    assert (
        "data keys:   total charge info['charge']; fragments split at info['split'] with "
        "charges info['qa'], info['qb']" in capsys.readouterr().out
    )
    out = tmp_path / "pred.xyz"
    assert main(["evaluate", str(run / "model.pt"), str(data), "-o", str(out), "--quiet"]) == 0
    for atoms in ase.io.read(out, ":"):
        q = atoms.get_charges()
        assert q[:2].sum() == pytest.approx(0.5, abs=1e-6)  # 8 decimals in the file
        assert q[2:].sum() == pytest.approx(-0.5, abs=1e-6)
    capsys.readouterr()


def test_evaluate_bad_input(workspace, capsys, tmp_path):
    model, data = str(workspace["model"]), str(workspace["data"])
    assert main(["evaluate", str(tmp_path / "none.pt"), data]) == 2
    assert "model file" in _error_line(capsys)
    assert main(["evaluate", model, str(tmp_path / "none.xyz")]) == 2
    assert "structure file" in _error_line(capsys)
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(3)}, junk)
    assert main(["evaluate", str(junk), data]) == 2
    assert "is not a hybridpot model file" in _error_line(capsys)
    text = tmp_path / "text.pt"
    text.write_text("not a model")
    assert main(["evaluate", str(text), data]) == 2
    assert "text.pt" in _error_line(capsys)
    assert main(["evaluate", model, data, "--batch-size", "0"]) == 2
    assert "--batch-size must be a positive integer, got 0" in _error_line(capsys)
    assert main(["evaluate", model, data, "--fragment-key", ""]) == 2
    assert "fragment_key must be a non-empty string, got ''" in _error_line(capsys)


def test_info(workspace, capsys):
    assert main(["info", str(workspace["model"])]) == 0
    out = capsys.readouterr().out
    model = hybridpot.load_model(workspace["model"])
    n_params = sum(p.numel() for p in model.parameters())
    assert f"parameters:  {n_params:,}" in out
    assert "elements:    Na, Cl" in out
    assert "cutoff:      3.5 Å" in out
    assert (
        "data keys:   total charge info['charge']; fragment ids arrays['fragment'] with "
        "charges info['fragment_charges']" in out
    )
    assert "hybrid (short-range network + Coulomb)" in out
    assert "train_sha256" in out and "best_epoch" in out  # provenance from the trainer
    assert main(["info", str(workspace["root"] / "missing.pt")]) == 2
    assert "does not exist" in _error_line(capsys)


def test_model_from_another_version_is_a_user_error(workspace, capsys, tmp_path):
    payload = torch.load(workspace["model"], weights_only=True)
    payload["state_dict"]["network.unknown_weight"] = torch.zeros(2)
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    assert main(["info", str(other)]) == 2
    line = _error_line(capsys)
    assert "its weights do not match this version of hybridpot" in line
    assert "network.unknown_weight" in line


def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    """The README's main job in its quick form: data, two models, the comparison table."""
    assert main(["demo", "--quick", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| test set | property | hybrid | short-range | ratio |" in printed
    results = json.loads((tmp_path / "demo_results.json").read_text())
    for name in ("hybrid", "short_range"):
        assert (tmp_path / name / "model.pt").is_file()
        for test_set in ("test", "test_large", "test_slab"):
            metrics = results[name]["test"][test_set]
            assert all(np.isfinite(v) for v in metrics.values())
            assert "forces_rmse" in metrics and "charge_mean_abs_error_e" in metrics
    assert results["hybrid"]["parameters"] == results["short_range"]["parameters"]


def test_usage_errors(capsys):
    assert main([]) == 2
    assert "usage: hybridpot" in capsys.readouterr().err
    assert main(["fit"]) == 2
    assert "invalid choice: 'fit'" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "evaluate" in capsys.readouterr().out


# ----------------------------------------------------------------------------- hardening
def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hybridpot {hybridpot.__version__}"


def _mace_style(images):
    """The same structures with MACE's label names (REF_energy, REF_forces)."""
    out = []
    for atoms in images:
        plain = atoms.copy()
        plain.info["REF_energy"] = atoms.get_potential_energy()
        plain.arrays["REF_forces"] = atoms.get_forces()
        out.append(plain)
    return out


def test_training_on_nothing_stops_and_lists_the_keys(workspace, capsys, tmp_path):
    data = tmp_path / "mace.xyz"
    ase.io.write(data, _mace_style(toy_nacl_structures(4, seed=21)), format="extxyz")
    out_dir = tmp_path / "run"
    arguments = ["train", str(workspace["config"]), f"data.train={data}", f"output_dir={out_dir}"]
    assert main([*arguments, "--quiet"]) == 2
    line = _error_line(capsys)
    assert "loss.energy is 100 but no training structure has a energy label" in line
    assert "(key 'energy', data.energy_key)" in line and "'REF_energy'" in line
    assert "'REF_forces'" in line
    assert not (out_dir / "model.pt").exists()
    # With the keys named, the same file trains.
    keys = ["data.energy_key=REF_energy", "data.forces_key=REF_forces", "epochs=1", "--quiet"]
    assert main([*arguments, *keys]) == 0


def test_partial_labels_are_reported(workspace, capsys, tmp_path):
    images = toy_nacl_structures(6, seed=22)
    for atoms in images[:2]:
        del atoms.calc.results["forces"]
    data = tmp_path / "partial.xyz"
    ase.io.write(data, images, format="extxyz")
    arguments = [f"data.train={data}", f"output_dir={tmp_path / 'run'}", "epochs=1", "--quiet"]
    assert main(["train", str(workspace["config"]), *arguments]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: forces labels \(data.forces_key: 'forces'\) in \d of \d", err)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("nan", r"\[5\]: positions must be finite"),
        ("1d", r"\[5\]: pbc \[True, False, False\] is not supported"),
        ("singular", r"\[5\]: cell is singular"),
    ],
)
def test_bad_structure_is_named_by_its_index_in_the_file(
    workspace, capsys, tmp_path, change, message
):
    images = toy_nacl_structures(8, seed=23)
    bad = images[5]
    if change == "nan":
        bad.positions[1, 2] = np.nan
    elif change == "1d":
        bad.pbc = (True, False, False)
    else:
        bad.cell[2] = bad.cell[0]
    data = tmp_path / "bad.xyz"
    ase.io.write(data, images, format="extxyz")
    arguments = [f"data.train={data}", f"output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(["train", str(workspace["config"]), *arguments]) == 2
    line = _error_line(capsys)
    assert str(data) in line
    assert re.search(message, line), line


@pytest.mark.parametrize("device", ["gpu", "cuda", "cuda:7"])
def test_unavailable_device_is_a_user_error(workspace, capsys, tmp_path, device):
    # Skipped only where the device exists (then it is not an error): "cuda" on any CUDA
    # machine, "cuda:7" on one with 8 or more GPUs; fewer GPUs still test the index check.
    exists = {
        "gpu": False,
        "cuda": torch.cuda.is_available(),
        "cuda:7": torch.cuda.device_count() > 7,
    }
    if exists[device]:
        pytest.skip(f"this machine has {device}")
    arguments = [f"device={device}", f"output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(["train", str(workspace["config"]), *arguments]) == 2
    line = _error_line(capsys)
    assert "config key 'device'" in line and repr(device) in line
    assert not (tmp_path / "run").exists()  # refused before anything was read or written
    model, data = str(workspace["model"]), str(workspace["data"])
    assert main(["evaluate", model, data, "--device", device]) == 2
    assert "--device" in _error_line(capsys)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.r_max=4.0", r"unknown model config key 'r_max'; did you mean 'cutoff'\?"),
        (
            "model.atomic_energies={Na: -1.0}",
            r"atomic_energies gives no energy for elements \['Cl'\]",
        ),
    ],
)
def test_model_section_mistakes(workspace, capsys, tmp_path, override, message):
    arguments = [override, f"output_dir={tmp_path / 'run'}", "--quiet"]
    assert main(["train", str(workspace["config"]), *arguments]) == 2
    assert re.search(message, _error_line(capsys))


def test_console_output_is_logged_and_appended_on_resume(workspace, capsys, tmp_path):
    out_dir = tmp_path / "run"
    base = ["train", str(workspace["config"]), f"output_dir={out_dir}"]
    assert main([*base, "epochs=1"]) == 0
    first = (out_dir / "train.log").read_text()
    printed = capsys.readouterr()
    assert "trained 1 epochs; best epoch 1" in first
    assert "epoch    1 |" in first and "epoch    1 |" in printed.out
    assert "\r" not in first and "validation errors:" in first
    assert main([*base, "epochs=2", "--resume"]) == 0
    second = (out_dir / "train.log").read_text()
    assert second.startswith(first)
    assert second.count("=== ") == 2 and "--resume" in second.splitlines()[len(first.splitlines())]
    assert "trained 2 epochs" in second
    # A refused run (a checkpoint exists) leaves the log alone.
    assert main(base) == 2
    assert (out_dir / "train.log").read_text() == second
    assert main([*base, "--overwrite", "epochs=1", "--quiet"]) == 0
    assert (out_dir / "train.log").read_text().count("=== ") == 1


def test_evaluate_names_a_structure_with_an_unknown_element(workspace, capsys, tmp_path):
    images = toy_nacl_structures(3, seed=24)
    images[1].numbers[0] = 1  # H, which the model does not know
    data = tmp_path / "with_h.xyz"
    ase.io.write(data, images, format="extxyz")
    assert main(["evaluate", str(workspace["model"]), str(data), "--quiet"]) == 2
    line = _error_line(capsys)
    assert re.search(r"with_h\.xyz\[1\]: elements \['H'\] are not among the model's", line), line


def test_evaluate_reads_the_total_charge_key_the_model_was_trained_with(workspace, tmp_path):
    payload = torch.load(workspace["model"], weights_only=True)
    payload["data_keys"] = {"total_charge": "Q"}
    path = tmp_path / "q.pt"
    torch.save(payload, path)
    images = toy_nacl_clusters(1, pairs=2, seed=25)
    images[0].info["Q"] = 1.0
    out = tmp_path / "pred.xyz"
    ase.io.write(tmp_path / "charged.xyz", images, format="extxyz")
    assert main(["evaluate", str(path), str(tmp_path / "charged.xyz"), "-o", str(out)]) == 0
    assert ase.io.read(out).get_charges().sum() == pytest.approx(1.0, abs=1e-5)


def test_a_folder_given_for_a_file_is_named(workspace, capsys, tmp_path):
    folder = str(tmp_path)
    for argv in (
        ["info", folder],
        ["evaluate", str(workspace["model"]), folder],
        ["train", folder],
        ["train", str(workspace["config"]), f"data.train={folder}"],
    ):
        assert main([*argv, "--quiet"] if argv[0] != "info" else argv) == 2
        assert "is a folder, not a file" in _error_line(capsys), argv
