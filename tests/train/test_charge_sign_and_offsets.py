"""Latent-charge sign convention, Coulomb-aware reference energies and the wall-time
budget of the trainer."""

import ase.io
import numpy as np
import pytest
import torch

import hybridpot
from hybridpot.data import graph_from_atoms
from hybridpot.data.statistics import fit_atomic_energies
from hybridpot.model.charge_sign import (
    electronegativity_order,
    mean_charges,
    orient_charges,
    sign_decision,
    sign_is_free,
)
from hybridpot.testing.structures import random_structure, small_model_config
from hybridpot.train import config_from_dict
from hybridpot.train.synthetic import toy_nacl_structures
from hybridpot.train.trainer import Trainer


def test_electronegativity_order_and_decision():
    assert electronegativity_order(["Na", "H", "Cl", "O", "C", "N"]) == [
        "O", "Cl", "N", "C", "H", "Na"
    ]  # fmt: skip
    assert electronegativity_order(["Ar", "Na"]) == ["Na", "Ar"]  # no value: last
    assert sign_decision({"O": -0.8, "H": 0.4}) == ("O", -0.8)
    # A negligible mean passes the decision on to the next element.
    assert sign_decision({"O": 1e-9, "H": -0.4, "Na": 0.4}) == ("H", -0.4)
    assert sign_decision({"O": 0.0, "H": 0.0}) is None


def _graphs(structures, cutoff):
    return [graph_from_atoms(a, cutoff, dtype=torch.float64) for a in structures]


@pytest.mark.parametrize("charge_model", ["latent", "qeq"])
def test_orientation_is_an_exact_symmetry_and_makes_seeds_agree(charge_model):
    # Qeq: negating chi negates the constrained minimum q of chi q + q^T A q / 2 for
    # neutral groups, so its sign is as free as that of latent charges.
    structures = [random_structure(seed=s, n=8) for s in range(3)]
    signs_before, flipped_any = [], False
    for seed in range(8):
        torch.manual_seed(seed)
        settings = {"charge_model": charge_model, "qeq_tolerance": 1e-12}
        if charge_model == "latent":
            settings = {"charge_init_scale": 1.0}
        model = hybridpot.build_model(small_model_config(**settings))
        graphs = _graphs(structures, model.cutoff)
        before = [model(g) for g in graphs]
        signs_before.append(np.sign(mean_charges(model, graphs)["Cl"]))
        flipped = orient_charges(model, graphs)
        flipped_any |= flipped
        after = [model(g) for g in graphs]
        assert mean_charges(model, graphs)["Cl"] < 0  # Cl is more electronegative than Na
        for b, a in zip(before, after, strict=True):
            sign = -1.0 if flipped else 1.0
            torch.testing.assert_close(a["charges"], sign * b["charges"], rtol=0, atol=1e-14)
            for key in ("energy", "forces", "stress"):  # neutral cells: nothing else moves
                torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=1e-12)
    # Without the convention the seeds disagree (so the check above can fail).
    assert {1.0, -1.0} <= set(signs_before)
    assert flipped_any


def test_sign_is_free_only_without_sign_fixing_data():
    neutral = _graphs([random_structure(seed=1, n=6)], 3.5)
    charged = _graphs([random_structure(seed=1, n=6, charge=1.0)], 3.5)
    assert sign_is_free(neutral, {"energy": 1.0, "forces": 10.0})
    assert not sign_is_free(charged, {"energy": 1.0})
    for label in ("charges", "dipole", "bec"):
        assert not sign_is_free(neutral, {"energy": 1.0, label: 0.5})
    field = graph_from_atoms(random_structure(seed=1, n=6, pbc=(False,) * 3), 3.5)
    field.electric_field = torch.tensor([[0.0, 0.0, 0.1]], dtype=field.cell.dtype)
    assert not sign_is_free([field], {"energy": 1.0})


def _train_config(tmp_path, name, seed=0, model_extra=None, **extra):
    path = tmp_path / "data.xyz"
    if not path.exists():
        ase.io.write(path, toy_nacl_structures(10, seed=4), format="extxyz")
    model = {
        k: v for k, v in small_model_config(charge_init_scale=1.0, **(model_extra or {})).items()
        if k not in ("elements", "atomic_energies")
    }  # fmt: skip
    return config_from_dict(
        {
            "data": {"train": str(path), "val_fraction": 0.2},
            "model": model,
            "epochs": 2,
            "batch_size": 4,
            "seed": seed,
            "dtype": "float64",
            "quiet": True,
            "plots": False,
            "output_dir": str(tmp_path / name),
            **extra,
        }
    )


@pytest.mark.parametrize("charge_model", ["latent", "qeq"])
def test_trained_models_of_two_seeds_agree_on_the_sign(tmp_path, charge_model):
    probe = _graphs(toy_nacl_structures(3, seed=9), 3.5)
    extra = {"charge_model": charge_model}
    for seed in (0, 1, 2):
        trainer = Trainer(_train_config(tmp_path, f"s{seed}", seed=seed, model_extra=extra))
        if seed == 1:
            # Start one run against the convention: the orientation after training must
            # still bring it round (two epochs do not leave the starting basin).
            trainer.model.network.charge_readout.flip_sign()
        result = trainer.fit()
        model = hybridpot.load_model(result.output_dir / "model.pt").double()
        assert mean_charges(model, probe)["Cl"] < 0


@pytest.mark.parametrize("induction", [False, True], ids=["coulomb", "coulomb+induction"])
def test_reference_energies_include_the_coulomb_energy_of_the_initial_charges(tmp_path, induction):
    trainer = Trainer(_train_config(tmp_path, "offsets", model_extra={"induction": induction}))
    model = trainer.model
    graphs = list(trainer.data.train)
    plain = fit_atomic_energies(graphs, ["Na", "Cl"])
    outputs = []
    with torch.no_grad():
        for g in graphs:
            out = model(g, compute_forces=False, compute_stress=False)
            outputs.append([float(out["energy_coulomb"][0]), float(out["energy_induction"][0])])
    coulomb, induced = np.array(outputs).T
    assert np.abs(coulomb).max() > 1e-3  # the initial charges do carry Coulomb energy
    # with induction, the long-range energy the offsets absorb includes it
    assert (np.abs(induced).max() > 1e-6) == induction  # small in near-perfect crystals
    coulomb = coulomb + induced
    energies = np.array([float(g.labels["energy"][0]) for g in graphs])
    counts = np.array(
        [[int((g.numbers == 11).sum()), int((g.numbers == 17).sum())] for g in graphs]
    )
    expected, *_ = np.linalg.lstsq(counts, energies - coulomb, rcond=None)
    got = model.config["atomic_energies"]
    # NaCl only: the fit fixes the sum per formula unit (minimum-norm split)
    assert got["Na"] + got["Cl"] == pytest.approx(expected.sum(), abs=1e-9)
    assert got["Na"] + got["Cl"] != pytest.approx(plain["Na"] + plain["Cl"], abs=1e-6)
    # the readout's shift buffer says the same as the config
    np.testing.assert_allclose(
        model.network.energy_readout.shift.numpy(), [got["Na"], got["Cl"]], rtol=0, atol=0
    )


def test_given_reference_energies_are_kept(tmp_path):
    config = _train_config(tmp_path, "given")
    config.model["atomic_energies"] = {"Na": -1.0, "Cl": -2.0}
    trainer = Trainer(config)
    assert trainer.model.config["atomic_energies"] == {"Na": -1.0, "Cl": -2.0}


def test_max_time_stops_after_the_epoch_that_spends_it(tmp_path):
    result = Trainer(_train_config(tmp_path, "timed", max_time=1e-6, epochs=50)).fit()
    assert len(result.history) == 1
    assert result.stop_reason == "max_time"
    model = hybridpot.load_model(result.output_dir / "model.pt")
    assert model.metadata["training"]["stop_reason"] == "max_time"
    full = Trainer(_train_config(tmp_path, "full", epochs=2)).fit()
    assert full.stop_reason == "epochs" and len(full.history) == 2


def test_a_run_stopped_by_max_time_resumes_with_a_larger_budget(tmp_path, assert_same_run):
    """Raising ``max_time`` on ``--resume`` continues a run its budget stopped, and the
    continued run ends where one that was never stopped does (history and weights)."""
    full = Trainer(_train_config(tmp_path, "full", epochs=3)).fit()
    stopped = Trainer(_train_config(tmp_path, "part", max_time=1e-6, epochs=3)).fit()
    assert stopped.stop_reason == "max_time" and len(stopped.history) == 1
    # the same budget again: nothing left to spend, so no epoch is added
    again = Trainer(_train_config(tmp_path, "part", max_time=1e-6, epochs=3), resume=True)
    assert len(again.fit().history) == 1
    resumed = Trainer(_train_config(tmp_path, "part", max_time=3600.0, epochs=3), resume=True)
    result = resumed.fit()
    assert result.stop_reason == "epochs"
    assert_same_run(result, full)


def test_raising_the_patience_on_resume_reopens_a_run_that_patience_stopped(
    tmp_path, assert_same_run
):
    """``early_stopping_patience`` is judged again on ``--resume``: a run stopped by a
    patience of 1 trains on with a patience of 100 and ends where a run that always had
    100 does; resuming with the old patience adds nothing."""
    settings = {"epochs": 5, "optim": {"lr": 0.05}}
    stopped = Trainer(_train_config(tmp_path, "part", early_stopping_patience=1, **settings))
    stopped = stopped.fit()
    assert stopped.stop_reason == "patience" and len(stopped.history) < 5
    again = Trainer(
        _train_config(tmp_path, "part", early_stopping_patience=1, **settings), resume=True
    ).fit()
    assert again.stop_reason == "patience" and len(again.history) == len(stopped.history)
    patient = {**settings, "early_stopping_patience": 100}
    resumed = Trainer(_train_config(tmp_path, "part", **patient), resume=True).fit()
    full = Trainer(_train_config(tmp_path, "full", **patient)).fit()
    assert resumed.stop_reason == full.stop_reason == "epochs"
    assert_same_run(resumed, full)


@pytest.mark.parametrize("bad", [0, -5.0, True, float("inf"), "soon"])
def test_max_time_must_be_a_positive_number(tmp_path, bad):
    with pytest.raises(Exception, match="max_time"):
        _train_config(tmp_path, "bad", max_time=bad)


def test_residual_offsets_are_the_least_squares_fit_of_per_atom_residuals():
    from hybridpot.train.offsets import residual_offsets

    torch.manual_seed(0)
    model = hybridpot.build_model(small_model_config())
    structures = toy_nacl_structures(3, seed=1) + toy_nacl_structures(3, seed=2, repeat=(2, 1, 1))
    # Non-stoichiometric structures make the per-element fit well posed.
    for atoms in structures[:2]:
        atoms.info["charge"] = 1.0
        atoms.numbers[1] = 11
        atoms.calc.results["energy"] += 0.3
    graphs = []
    for atoms in structures:
        graph = graph_from_atoms(atoms, model.cutoff, dtype=torch.float64)
        energy = atoms.calc.results["energy"]
        graph.labels["energy"] = torch.tensor([energy], dtype=torch.float64)
        graphs.append(graph)
    report = residual_offsets(model, graphs[:4], graphs[4:])
    rows, values = [], []
    for g in graphs[:4]:
        out = model(g, compute_forces=False, compute_stress=False)
        n = g.num_nodes
        rows.append([int((g.numbers == 11).sum()) / n, int((g.numbers == 17).sum()) / n])
        values.append((float(g.labels["energy"][0]) - float(out["energy"][0])) / n)
    expected, *_ = np.linalg.lstsq(np.array(rows), np.array(values), rcond=None)
    assert report["shift"]["Na"] == pytest.approx(expected[0], abs=1e-9)
    assert report["shift"]["Cl"] == pytest.approx(expected[1], abs=1e-9)
    assert report["structures"] == 4 and report["valid_rmse_before"] is not None


def test_trainer_refits_the_offsets_only_when_validation_improves(tmp_path):
    result = Trainer(_train_config(tmp_path, "refit", epochs=1)).fit()
    model = hybridpot.load_model(result.output_dir / "model.pt")
    report = model.metadata["training"]["atomic_energies_refit"]
    assert report["applied"] == (report["valid_rmse_after"] < report["valid_rmse_before"])
    off = Trainer(_train_config(tmp_path, "norefit", epochs=1, refit_atomic_energies=False))
    unrefit = off.fit()
    kept = hybridpot.load_model(unrefit.output_dir / "model.pt")
    assert kept.metadata["training"]["atomic_energies_refit"] is None
    shift = report["shift"] if report["applied"] else {"Na": 0.0, "Cl": 0.0}
    # The same seed and data: the two runs differ by exactly the applied shift.
    for symbol in ("Na", "Cl"):
        assert model.config["atomic_energies"][symbol] == pytest.approx(
            kept.config["atomic_energies"][symbol] + shift[symbol], abs=1e-12
        )
