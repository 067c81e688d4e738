"""Training config: defaults, YAML, overrides and the validation messages."""

import re

import pytest
import yaml

from hybridpot.train.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    save_config,
)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "train.xyz"
    path.write_text("placeholder: existence is all the config checks\n")
    return path


@pytest.fixture
def config_file(tmp_path, data_file):
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"train": str(data_file), "val_fraction": 0.2},
                "model": {"cutoff": 4.0, "num_layers": 1},
                "optim": {"lr": 0.01},
                "epochs": 3,
            }
        )
    )
    return path


def test_yaml_values_and_defaults(config_file, data_file):
    config = load_config(config_file)
    assert isinstance(config, TrainConfig)
    assert config.data.train == str(data_file)
    assert config.data.val_fraction == 0.2
    assert config.model == {"cutoff": 4.0, "num_layers": 1}
    assert config.optim.lr == 0.01
    assert config.epochs == 3
    # untouched fields keep their defaults
    assert config.batch_size == TrainConfig().batch_size
    assert config.schedule.kind == "plateau"
    assert config.loss.kind == "mse"


def test_overrides_with_dotted_keys(config_file):
    config = load_config(
        config_file,
        [
            "optim.lr=1e-3",  # YAML 1.1 reads this as a string; float fields accept it
            "model.cutoff=5.5",
            "model.coulomb=false",
            "optim.clip_grad_norm=null",
            "optim.betas=[0.8, 0.99]",
            "schedule.kind=cosine",
            "epochs=7",
        ],
    )
    assert config.optim.lr == pytest.approx(1e-3)
    assert config.model == {"cutoff": 5.5, "num_layers": 1, "coulomb": False}
    assert config.optim.clip_grad_norm is None
    assert config.optim.betas == [0.8, 0.99]
    assert config.schedule.kind == "cosine"
    assert config.epochs == 7


def test_int_is_accepted_for_float(data_file):
    config = config_from_dict(
        {"data": {"train": str(data_file)}, "model": {"cutoff": 4}, "optim": {"lr": 1}}
    )
    assert isinstance(config.optim.lr, float)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", r"unknown config key 'optim\.lrr'; did you mean 'optim\.lr'\?"),
        ("epoch=3", r"unknown config key 'epoch'; did you mean 'epochs'\?"),
        ("dat.train=x", r"unknown config key 'dat'; did you mean 'data'\?"),
        ("zzz=1", r"unknown config key 'zzz'$"),
        ("epochs=many", r"config key 'epochs' must be int, got 'many' \(str\)"),
        ("epochs=2.5", r"config key 'epochs' must be int, got 2\.5"),
        ("quiet=3", r"config key 'quiet' must be bool, got 3"),
        ("optim.lr=fast", r"config key 'optim\.lr' must be float, got 'fast'"),
        ("optim.lr=.nan", r"config key 'optim\.lr' must be float, got nan"),
        (
            "schedule.kind=linear",
            r"config key 'schedule\.kind' must be 'plateau' \| 'cosine' \| "
            r"'constant', got 'linear'",
        ),
        ("optim.ema_decay=high", r"config key 'optim\.ema_decay' must be float \| null"),
        ("optim=3", r"optim must be a mapping of keys to values, got 3"),
        ("optim.lr=-1", r"config key 'optim\.lr' must be > 0, got -1\.0"),
        ("optim.ema_decay=1.0", r"config key 'optim\.ema_decay' must be in \[0, 1\) or null"),
        ("data.val_fraction=1.5", r"config key 'data\.val_fraction' must be in \[0, 1\)"),
        ("batch_size=0", r"config key 'batch_size' must be >= 1, got 0"),
        ("model.cutoff=null", r"config key 'model\.cutoff' must be a positive number"),
        ("loss.energy=0", None),
        ("data.valid=missing.xyz", r"config key 'data\.valid': file 'missing\.xyz' does not exist"),
        ("dtype=float16", r"config key 'dtype' must be 'float32' \| 'float64', got 'float16'"),
    ],
)
def test_validation_messages(config_file, override, message):
    if message is None:  # a valid override: must not raise
        assert load_config(config_file, [override]).loss.energy == 0.0
        return
    with pytest.raises(ConfigError, match=message):
        load_config(config_file, [override])


def test_all_loss_weights_zero_is_an_error(config_file):
    zero = [f"loss.{p}=0" for p in ("energy", "forces", "stress", "charges", "dipole")]
    with pytest.raises(ConfigError, match=r"'loss' must be a mapping with at least one positive"):
        load_config(config_file, zero)


def test_missing_files(tmp_path, config_file):
    with pytest.raises(ConfigError, match=r"config file '.*nope\.yaml' does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"'data\.train': file 'gone\.xyz' does not exist"):
        load_config(config_file, ["data.train=gone.xyz"])
    with pytest.raises(ConfigError, match=r"'data\.train' must be the path of the training"):
        config_from_dict({"model": {"cutoff": 3.0}})


def test_bad_yaml_and_bad_overrides(tmp_path, config_file):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"is not valid YAML"):
        load_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"must hold a mapping of keys to values, got list"):
        load_config(listing)
    with pytest.raises(ConfigError, match=r"override 'epochs' must look like key=value"):
        apply_overrides({}, ["epochs"])
    with pytest.raises(ConfigError, match=r"override 'optim\.\.lr=1' has an empty key part"):
        apply_overrides({}, ["optim..lr=1"])
    with pytest.raises(ConfigError, match=r"override 'epochs\.x=1': 'epochs' is not a section"):
        apply_overrides({"epochs": 3}, ["epochs.x=1"])


def test_overrides_do_not_modify_the_input():
    values = {"optim": {"lr": 0.1}}
    result = apply_overrides(values, ["optim.lr=0.2", "model.cutoff=3"])
    assert values == {"optim": {"lr": 0.1}}
    assert result == {"optim": {"lr": 0.2}, "model": {"cutoff": 3}}


def test_save_and_reload_round_trip(tmp_path, config_file):
    config = load_config(config_file, ["optim.betas=[0.7, 0.9]", "early_stopping_patience=4"])
    save_config(config, tmp_path / "out" / "effective.yaml")
    again = load_config(tmp_path / "out" / "effective.yaml")
    assert again == config


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("lr=1e-3", "optim.lr"),
        ("energy_key=REF_energy", "data.energy_key"),
        ("train=x.xyz", "data.train"),
        ("r_max=5", "model.cutoff"),
        ("cutoff=5", "model.cutoff"),
        ("max_num_epochs=3", "epochs"),
        ("energy_weight=1", "loss.energy"),
        ("optim.learning_rate=1", "optim.lr"),
        ("model.r_max=5", "cutoff"),
    ],
)
def test_unknown_keys_suggest_the_key_meant(override, suggestion):
    with pytest.raises(ConfigError, match=rf"; did you mean '{re.escape(suggestion)}'\?"):
        load_config(None, [override, "model.cutoff=3", "data.train=x"], check_paths=False)
