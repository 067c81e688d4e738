"""Fine-tuning from a model file: exact carry-over, new elements, freezing, and the gain.

The gain test trains a model on one Tosi-Fumi NaCl data set (crystals at 300-700 K),
then fine-tunes it on another (hotter, more strained crystals at 800-1100 K) for the
same small budget as a model trained from scratch on that set: the fine-tuned model's
test error on the second set must be lower.
"""

import ase.io
import numpy as np
import pytest
import torch

from hybridpot.data import batch_graphs
from hybridpot.data.dataset import load_graphs
from hybridpot.model import build_model, save_model
from hybridpot.train import ConfigError, load_config
from hybridpot.train.finetune import transfer_weights
from hybridpot.train.synthetic import toy_nacl_structures
from hybridpot.train.trainer import Trainer

TINY = {
    "cutoff": 3.5,
    "num_layers": 2,
    "hidden_irreps": "8x0e + 8x1o",
    "l_max": 1,
    "num_radial": 4,
    "radial_mlp": [8],
}


@pytest.fixture
def source_file(tmp_path):
    """A NaCl model with non-trivial statistics and weights, saved in float64."""
    torch.manual_seed(3)
    config = {
        **TINY,
        "elements": ["Na", "Cl"],
        "atomic_energies": {"Na": -1.25, "Cl": -2.5},
        "energy_scale": 0.7,
        "avg_num_neighbors": 6.5,
    }
    model = build_model(config).double()
    with torch.no_grad():  # move every weight away from its initial value
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / "source.pt"
    save_model(model, path)
    return path, model


@pytest.fixture
def kcl_file(tmp_path):
    """NaCl cells plus cells with Na replaced by K (a new element for the source)."""
    images = toy_nacl_structures(6, seed=1)
    for atoms in images[3:]:
        atoms.numbers[atoms.numbers == 11] = 19
    path = tmp_path / "with_k.xyz"
    ase.io.write(path, images, format="extxyz")
    return path


def _config(tmp_path, data, *overrides):
    return load_config(
        None,
        [
            f"data.train={data}",
            f"output_dir={tmp_path / 'run'}",
            "quiet=true",
            "plots=false",
            "dtype=float64",
            "epochs=1",
            "batch_size=2",
            *overrides,
        ],
    )


def _predict(model, graphs):
    out = model(batch_graphs(graphs), compute_forces=True, compute_stress=True)
    return {k: out[k].detach() for k in ("energy", "forces", "charges", "stress")}


def test_weights_statistics_and_predictions_carry_over(tmp_path, source_file, kcl_file):
    path, source = source_file
    trainer = Trainer(_config(tmp_path, kcl_file, f"init_from={path}"))
    model = trainer.model
    assert model.config["elements"] == ["Na", "Cl", "K"]  # new element appended
    for key in ("energy_scale", "avg_num_neighbors", "cutoff", "hidden_irreps", "num_layers"):
        assert model.config[key] == source.config[key], key
    energies = model.config["atomic_energies"]
    assert energies["Na"] == -1.25 and energies["Cl"] == -2.5
    # K's reference energy: least squares of E - E0(Cl) over the training K cells (one K,
    # one Cl each): their mean.
    k_cells = [g for g in trainer.data.train if 19 in g.numbers.tolist()]
    assert k_cells
    expected = np.mean([float(g.labels["energy"][0]) - (-2.5) for g in k_cells])
    assert energies["K"] == pytest.approx(expected, rel=1e-12)

    # NaCl structures: the fine-tuning start predicts exactly what the source predicts.
    nacl = load_graphs(kcl_file, 3.5)[:3]
    a, b = _predict(source, nacl), _predict(model, nacl)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-12, atol=1e-12)
    # Weights of equal shape are copied bit for bit; the embedding keeps the old rows
    # and K gets a fresh (random, non-zero) one.
    src, dst = source.state_dict(), model.state_dict()
    same = [k for k in src if src[k].shape == dst[k].shape]
    assert len(same) > 10 and all(torch.equal(src[k], dst[k]) for k in same)
    embedding = dst["network.embedding.weight"]
    assert torch.equal(embedding[:2], src["network.embedding.weight"])
    assert embedding[2].abs().sum() > 0
    # And the run trains from there.
    trainer.fit()


def test_transfer_weights_refuses_elements_that_do_not_extend_the_source(source_file):
    _, source = source_file
    target = build_model({**TINY, "elements": ["Cl", "Na"]}).double()
    with pytest.raises(ValueError, match="must start with the source's"):
        transfer_weights(source, target)


def test_freeze_keeps_parameters_and_checks_patterns(tmp_path, source_file, crystal_file):
    path, source = source_file
    config = _config(
        tmp_path,
        crystal_file,
        f"init_from={path}",
        "freeze=['network.embedding.*', 'network.blocks.0.*']",
    )
    trainer = Trainer(config)
    frozen = set(trainer.frozen)
    assert "network.embedding.weight" in frozen
    assert any(k.startswith("network.blocks.0.") for k in frozen)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_epoch()
    after = trainer.model.state_dict()
    for name, _ in trainer.model.named_parameters():
        changed = not torch.equal(before[name], after[name])
        assert changed == (name not in frozen), name

    bad = _config(
        tmp_path,
        crystal_file,
        f"init_from={path}",
        "freeze=['network.nothing.*']",
        f"output_dir={tmp_path / 'other'}",
    )
    with pytest.raises(ConfigError, match=r"'freeze': pattern 'network.nothing.\*' matches no"):
        Trainer(bad)


def test_architecture_must_match_the_source(tmp_path, source_file, crystal_file):
    path, _ = source_file
    with pytest.raises(ConfigError, match=r"model.num_layers' is 3 but init_from model"):
        Trainer(_config(tmp_path, crystal_file, f"init_from={path}", "model.num_layers=3"))
    with pytest.raises(ConfigError, match="'init_from': model file .* does not exist"):
        _config(tmp_path, crystal_file, f"init_from={tmp_path / 'none.pt'}")


@pytest.mark.slow
def test_fine_tuning_beats_training_from_scratch(tmp_path):
    from hybridpot.reference import MDSettings, SamplingSpec, generate_nacl_dataset

    md = MDSettings(equilibration_steps=10, stride=5, frames_per_run=8)
    cool = [SamplingSpec("crystal", "crystal", 1, (300.0, 700.0), 0.02, 0.02)]
    hot = [SamplingSpec("hot", "crystal", 1, (800.0, 1100.0), 0.04, 0.03)]
    ase.io.write(tmp_path / "a.xyz", generate_nacl_dataset(32, 1, specs=cool, md=md))
    ase.io.write(tmp_path / "b.xyz", generate_nacl_dataset(8, 2, specs=hot, md=md))
    ase.io.write(tmp_path / "b_test.xyz", generate_nacl_dataset(16, 3, specs=hot, md=md))
    model = [
        f"model.{k}={v!r}" if isinstance(v, str) else f"model.{k}={v}" for k, v in TINY.items()
    ]
    # Energy weight 100: (0.1 eV/atom)² then weighs as much as 10 x (0.3 eV/Å)² of forces.
    common = [
        "quiet=true",
        "plots=false",
        "batch_size=4",
        "optim.lr=0.01",
        "loss.energy=100",
        # Compare what training does from the two starts: the end-of-training offset refit
        # (a linear fix on top of either) would hide the energy difference it is about.
        "refit_atomic_energies=false",
        *model,
    ]

    def run(name, data, epochs, *extra):
        config = load_config(
            None,
            [
                f"data.train={tmp_path / data}",
                f"data.test={tmp_path / 'b_test.xyz'}",
                f"output_dir={tmp_path / name}",
                f"epochs={epochs}",
                *common,
                *extra,
            ],
        )
        return Trainer(config).fit()

    run("pretrain", "a.xyz", 15)
    budget = 12
    scratch = run("scratch", "b.xyz", budget)
    tuned = run("tuned", "b.xyz", budget, f"init_from={tmp_path / 'pretrain' / 'model.pt'}")
    print(
        "test forces RMSE scratch",
        scratch.test_metrics["forces_rmse"],
        "tuned",
        tuned.test_metrics["forces_rmse"],
    )
    print(
        "test energy RMSE scratch",
        scratch.test_metrics["energy_rmse"],
        "tuned",
        tuned.test_metrics["energy_rmse"],
    )
    # Measured (CPU, seeded, so reproducible on one machine): forces 293 vs 330 meV/Å,
    # energy 52.5 vs 56.5 meV/atom. The margins are modest at this tiny budget.
    assert tuned.test_metrics["forces_rmse"] < scratch.test_metrics["forces_rmse"]
    assert tuned.test_metrics["energy_rmse"] < scratch.test_metrics["energy_rmse"]


def test_polarizabilities_carry_over_to_new_elements():
    """Induction models: the old elements keep their learned polarisabilities, a new one
    starts from the initial value."""
    torch.manual_seed(5)
    source = build_model({**TINY, "elements": ["Na", "Cl"], "induction": True}).double()
    with torch.no_grad():
        source.polarizability_raw.copy_(torch.tensor([-1.0, 0.7]))
    target = build_model({**TINY, "elements": ["Na", "Cl", "K"], "induction": True}).double()
    start = target.polarizabilities()[2].item()
    assert "polarizability_raw" in transfer_weights(source, target)
    torch.testing.assert_close(target.polarizabilities()[:2], source.polarizabilities())
    assert target.polarizabilities()[2].item() == start
