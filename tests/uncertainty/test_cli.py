"""hybridpot select and hybridpot evaluate --calibration-plot."""

import ase.io
import torch

import hybridpot
from hybridpot.cli import main
from hybridpot.model import save_model
from hybridpot.testing.structures import small_model_config


def test_select_writes_the_picks_and_skips_copies(fitted, data, tmp_path, capsys):
    train, valid = data
    save_model(fitted, tmp_path / "m.pt")
    ase.io.write(tmp_path / "pool.xyz", train[:2] + valid)
    ase.io.write(tmp_path / "train.xyz", train)
    code = main(
        [
            "select",
            str(tmp_path / "pool.xyz"),
            "--model",
            str(tmp_path / "m.pt"),
            "-n",
            "3",
            "-o",
            str(tmp_path / "picked.xyz"),
            "--exclude",
            str(tmp_path / "train.xyz"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert "2 copies of labelled ones skipped" in capsys.readouterr().out
    picked = ase.io.read(tmp_path / "picked.xyz", ":")
    assert len(picked) == 3 and all(a.info["pool_index"] >= 2 for a in picked)


def test_select_needs_a_model_with_uncertainty(data, tmp_path, capsys):
    torch.manual_seed(0)
    save_model(hybridpot.build_model(small_model_config()), tmp_path / "plain.pt")
    ase.io.write(tmp_path / "pool.xyz", data[1])
    code = main(
        [
            "select",
            str(tmp_path / "pool.xyz"),
            "--model",
            str(tmp_path / "plain.pt"),
            "-n",
            "1",
            "-o",
            str(tmp_path / "p.xyz"),
        ]
    )
    assert code == 2 and "no fitted uncertainty" in capsys.readouterr().err


def test_evaluate_reports_calibration_and_plots(fitted, data, tmp_path, capsys):
    save_model(fitted, tmp_path / "m.pt")
    ase.io.write(tmp_path / "valid.xyz", data[1])
    code = main(
        [
            "evaluate",
            str(tmp_path / "m.pt"),
            str(tmp_path / "valid.xyz"),
            "--quiet",
            "--calibration-plot",
            str(tmp_path / "c.png"),
            "-o",
            str(tmp_path / "p.xyz"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "uncertainty calibration" in out and "spearman" in out
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    written = ase.io.read(tmp_path / "p.xyz", 0)
    assert written.info["energy_uncertainty"] > 0
    assert written.arrays["forces_uncertainty"].shape == (len(written),)


def test_active_config_reference_is_up_to_date():
    from pathlib import Path

    from hybridpot._docgen.active_config import BEGIN, END, active_reference

    text = (Path(__file__).resolve().parents[2] / "docs" / "uncertainty.md").read_text()
    section = text.split(BEGIN)[1].split(END)[0]
    assert section.strip() == active_reference().strip(), (
        "run: python -m hybridpot._docgen.active_config docs/uncertainty.md"
    )
