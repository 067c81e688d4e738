"""The training configuration: typed dataclasses with a docstring per field.

A config is a YAML mapping with the sections below (every key has a default except
``data.train``; ``model`` is passed through to :func:`hybridpot.build_model` and is
validated there). Command-line overrides use dotted keys, ``optim.lr=1e-3``, with the
value parsed by ``yaml.safe_load``. Errors name the unknown key (with the closest valid
one), the wrong type, or the missing file. ``docs/training.md`` is generated from the
field docstrings (:mod:`hybridpot._docgen.train_config`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .. import keys
from ..fileio import require_file
from .schema import ConfigError, UnknownKeyError, build_dataclass


@dataclass
class DataConfig:
    """Where the reference structures are and which keys hold their labels."""

    train: str = field(default="", metadata={"required": True})
    """Training structures (extended XYZ or any file ASE reads, or a packed file from
    ``hybridpot pack``, read on demand). Required."""

    valid: str | None = None
    """Validation structures; null: split ``val_fraction`` off the training file."""

    test: str | None = None
    """Test structures; null: split ``test_fraction`` off the training file."""

    val_fraction: float = 0.1
    """Fraction of the training file held out for validation when ``valid`` is null."""

    test_fraction: float = 0.0
    """Fraction of the training file held out for testing when ``test`` is null."""

    split_seed: int | None = None
    """Seed of the random train/validation/test split; null: use the top-level ``seed``."""

    format: str | None = None
    """ASE file format (e.g. ``extxyz``); null: guessed from the file name."""

    energy_key: str = "energy"
    """Total energy (eV): ``atoms.info[key]`` or the calculator's result of that name."""

    forces_key: str = "forces"
    """Forces (eV/Å): ``atoms.arrays[key]`` or the calculator's result of that name."""

    stress_key: str = "stress"
    """Stress (eV/Å³, ASE sign; 6 Voigt values or 3x3): ``atoms.info[key]`` or calculator."""

    charges_key: str = "charges"
    """Per-atom charges (e): ``atoms.arrays[key]`` or the calculator's result."""

    total_charge_key: str = keys.TOTAL_CHARGE_INFO
    """Total charge of a structure (e): ``atoms.info[key]``; absent means 0."""

    dipole_key: str = "dipole"
    """Dipole moment (e·Å) of a non-periodic structure: ``atoms.info[key]`` or calculator."""

    weight_key: str = "weight"
    """Per-structure loss weight: ``atoms.info[key]``; absent means 1."""

    bec_key: str = keys.BEC_ARRAY
    """Born effective charges (e; (N, 9) row-major Z_i[a, b] = dμ_a/dr_ib, or (N, 3, 3)):
    ``atoms.arrays[key]``."""

    fragment_key: str = keys.FRAGMENT_ARRAY
    """Per-atom fragment ids 0..F-1 (ints): ``atoms.arrays[key]``; absent: no fragments."""

    fragment_charges_key: str | list[str] = keys.FRAGMENT_CHARGES_INFO
    """Fragment charges (e): ``atoms.info[key]`` holding F numbers, or a list of F info
    keys with one charge each (e.g. ``[chargeA, chargeB]`` for the LODE dimer files)."""

    fragment_split_key: str | None = None
    """Instead of per-atom ids: ``atoms.info[key]`` = k puts atoms 0..k-1 in fragment 0 and
    the rest in fragment 1 (e.g. ``indexB`` for the LODE dimer files); null: not used."""

    electric_field_key: str = keys.ELECTRIC_FIELD_INFO
    """Uniform external electric field (V/Å, 3 numbers): ``atoms.info[key]``; absent: none."""

    cache_dir: str | None = None
    """Folder for neighbour-list caches keyed by file hash and cutoff; null: memory only."""

    num_workers: int = 0
    """Worker processes that read and batch packed data while the model trains (0: read
    in the training process). Only packed files (``hybridpot pack``) are read on demand."""

    statistics_samples: int = 2000
    """Packed data: the average number of neighbours is counted on this many training
    structures (evenly spaced); reference energies and the force scale use all of them."""


@dataclass
class OptimConfig:
    """The AdamW optimiser, gradient clipping and the weight average."""

    lr: float = 1e-2
    """Initial learning rate."""

    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW moment decay rates (beta1, beta2)."""

    eps: float = 1e-8
    """AdamW denominator epsilon."""

    amsgrad: bool = False
    """Use the AMSGrad variant of AdamW."""

    clip_grad_norm: float | None = 10.0
    """Largest global gradient norm (clipped above it); null: no clipping."""

    ema_decay: float | None = 0.99
    """Decay of the exponential moving average of the weights used for validation and
    export; null: no average (the raw weights are used)."""


@dataclass
class ScheduleConfig:
    """The learning-rate schedule, stepped once per epoch."""

    kind: Literal["plateau", "cosine", "constant"] = "plateau"
    """``plateau``: multiply by ``factor`` when the validation loss stalls for ``patience``
    epochs; ``cosine``: cosine decay to ``min_lr`` over ``epochs``; ``constant``."""

    factor: float = 0.5
    """Plateau: factor applied to the learning rate on a plateau."""

    patience: int = 5
    """Plateau: epochs without improvement before the learning rate is reduced."""

    min_lr: float = 1e-6
    """Smallest learning rate (plateau floor, cosine end point)."""


@dataclass
class LossConfig:
    """Loss function and the weight of each property (0 turns a property off)."""

    kind: Literal["mse", "huber"] = "mse"
    """Per-component loss: mean squared error or Huber."""

    huber_delta: float = 0.01
    """Huber: the error (in the property's unit) where quadratic turns linear."""

    energy: float = 100.0
    """Weight of the energy-per-atom loss ((eV/atom)² for MSE). 100 against the forces'
    10 because a squared energy error per atom is typically 10³–10⁴ times smaller than a
    squared force component error (1 meV/atom against 50 meV/Å): with weight 1 the energy
    was not fitted at all (charged dimers: 160 against 0.9 meV per structure at 150
    epochs; the SPICE energy stalled), while at 100 the forces still dominate the loss.
    This is the setting of ``benchmarks/real_data.py``."""

    forces: float = 10.0
    """Weight of the force loss ((eV/Å)² per component for MSE)."""

    stress: float = 0.0
    """Weight of the stress loss ((eV/Å³)² per Voigt component; needs stress labels)."""

    charges: float = 0.0
    """Weight of the per-atom charge loss (e²; needs charge labels)."""

    dipole: float = 0.0
    """Weight of the dipole loss ((e·Å)² per component; non-periodic structures)."""

    bec: float = 0.0
    """Weight of the Born effective charge loss (e² per component of Z*_i; needs BEC
    labels, ``data.bec_key``)."""


@dataclass
class TrainConfig:
    """Everything a training run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    """Reference data: files, split and label keys."""

    model: dict = field(default_factory=dict)
    """Model config passed to ``hybridpot.build_model`` (needs ``cutoff``; ``elements``
    default to those in the data; statistics are filled in from the training set)."""

    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser settings."""

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate schedule."""

    loss: LossConfig = field(default_factory=LossConfig)
    """Loss function and weights."""

    epochs: int = 100
    """Number of passes over the training set."""

    batch_size: int = 4
    """Structures per training step, per process: K processes (``--devices K``) take
    global steps of K x ``batch_size`` structures."""

    eval_batch_size: int | None = None
    """Structures per validation/test batch (per process); null: ``batch_size``."""

    early_stopping_patience: int | None = None
    """Stop after this many epochs without a better validation loss; null: never. Keep it
    well above the time a loss spike takes to recover: on the charged-dimer benchmark
    (5 steps per epoch) that took more than 60 epochs, and patience 60 stopped runs that
    were still improving. Raising it on ``--resume`` reopens a run it stopped."""

    refit_atomic_energies: bool = True
    """After training, refit the per-element reference energies on the training set's
    per-atom energy residuals (one least-squares fit) and keep the result if it lowers
    the validation energy error (the training error without validation data). Skipped
    when ``model.atomic_energies`` is given."""

    max_time: float | None = None
    """Wall-time budget in seconds (a safety net for long runs): training stops after
    the epoch in which the summed epoch times reach it; the best weights are exported as
    usual. Counted across resumed runs; a run it stopped continues with ``--resume`` and a
    larger value. null: no limit."""

    dtype: Literal["float32", "float64"] = "float32"
    """Floating-point precision of the model and the data."""

    device: str = "cpu"
    """Torch device (``cpu``, ``cuda``, ``cuda:1``, ...)."""

    seed: int = 0
    """Seed of the weight initialisation, the shuffling and (by default) the split."""

    output_dir: str = "runs/hybridpot"
    """Folder for the model, checkpoint, effective config, CSV log and plots."""

    quiet: bool = False
    """No progress bars or per-epoch lines (for scripts)."""

    plots: bool = True
    """Write PNG learning curves and parity plots at the end."""

    uncertainty: bool = False
    """After training, fit a last-layer (LLPR) uncertainty on the training set and
    calibrate it on the validation set (needs one): model.pt then predicts energy, force
    and charge standard deviations (see docs/uncertainty.md)."""

    init_from: str | None = None
    """Fine-tuning: a model file (``model.pt``) whose weights, elements and statistics
    start this run. Its architecture is used (``model`` entries other than ``cutoff``
    must match it or be left out); elements of the data that it lacks get fresh
    embeddings and least-squares reference energies. null: start from random weights."""

    freeze: list[str] = field(default_factory=list)
    """Parameters not trained: glob patterns on parameter names (e.g. ``network.embedding.*``,
    ``network.layers.0.*``); each pattern must match at least one parameter."""

    def to_dict(self) -> dict:
        """A plain, YAML/JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


SECTIONS: tuple[type, ...] = (TrainConfig, DataConfig, OptimConfig, ScheduleConfig, LossConfig)


# ----------------------------------------------------------------------------- validation
def _check_range(config: TrainConfig) -> None:
    def need(condition: bool, key: str, expected: str, value: Any) -> None:
        if not condition:
            raise ConfigError(f"config key {key!r} must be {expected}, got {value!r}")

    d, o, s, loss = config.data, config.optim, config.schedule, config.loss
    need(bool(d.train), "data.train", "the path of the training structures", d.train)
    need(0 <= d.val_fraction < 1, "data.val_fraction", "in [0, 1)", d.val_fraction)
    need(0 <= d.test_fraction < 1, "data.test_fraction", "in [0, 1)", d.test_fraction)
    need(
        d.val_fraction + d.test_fraction < 1,
        "data.val_fraction + data.test_fraction",
        "< 1",
        d.val_fraction + d.test_fraction,
    )
    need(o.lr > 0, "optim.lr", "> 0", o.lr)
    need(o.weight_decay >= 0, "optim.weight_decay", ">= 0", o.weight_decay)
    need(
        len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
        "optim.betas",
        "two numbers in [0, 1)",
        o.betas,
    )
    need(o.eps > 0, "optim.eps", "> 0", o.eps)
    need(
        o.clip_grad_norm is None or o.clip_grad_norm > 0,
        "optim.clip_grad_norm",
        "> 0 or null",
        o.clip_grad_norm,
    )
    need(
        o.ema_decay is None or 0 <= o.ema_decay < 1,
        "optim.ema_decay",
        "in [0, 1) or null",
        o.ema_decay,
    )
    need(0 < s.factor < 1, "schedule.factor", "in (0, 1)", s.factor)
    need(s.patience >= 0, "schedule.patience", ">= 0", s.patience)
    need(s.min_lr >= 0, "schedule.min_lr", ">= 0", s.min_lr)
    need(loss.huber_delta > 0, "loss.huber_delta", "> 0", loss.huber_delta)
    for name in ("energy", "forces", "stress", "charges", "dipole"):
        value = getattr(loss, name)
        need(value >= 0, f"loss.{name}", ">= 0", value)
    need(
        any(getattr(loss, n) > 0 for n in ("energy", "forces", "stress", "charges", "dipole")),
        "loss",
        "a mapping with at least one positive weight",
        dataclasses.asdict(loss),
    )
    need(d.num_workers >= 0, "data.num_workers", ">= 0", d.num_workers)
    need(d.statistics_samples >= 1, "data.statistics_samples", ">= 1", d.statistics_samples)
    need(config.epochs >= 1, "epochs", ">= 1", config.epochs)
    need(config.batch_size >= 1, "batch_size", ">= 1", config.batch_size)
    need(
        config.eval_batch_size is None or config.eval_batch_size >= 1,
        "eval_batch_size",
        ">= 1 or null",
        config.eval_batch_size,
    )
    need(
        config.early_stopping_patience is None or config.early_stopping_patience >= 1,
        "early_stopping_patience",
        ">= 1 or null",
        config.early_stopping_patience,
    )
    need(
        config.max_time is None
        or (
            isinstance(config.max_time, (int, float))
            and not isinstance(config.max_time, bool)
            and math.isfinite(config.max_time)
            and config.max_time > 0
        ),
        "max_time",
        "a positive number of seconds or null",
        config.max_time,
    )
    need(
        all(isinstance(p, str) and p for p in config.freeze),
        "freeze",
        "a list of non-empty glob patterns on parameter names",
        config.freeze,
    )
    cutoff = config.model.get("cutoff")
    need(
        (config.init_from is not None and cutoff is None)
        or (isinstance(cutoff, (int, float)) and not isinstance(cutoff, bool) and cutoff > 0),
        "model.cutoff",
        "a positive number of Å (the model config needs it unless init_from gives it)",
        cutoff,
    )


#: Names other codes (MACE's run_train arguments, mostly) give our keys.
OTHER_NAMES = {
    "lr": "optim.lr",
    "learning_rate": "optim.lr",
    "weight_decay": "optim.weight_decay",
    "ema_decay": "optim.ema_decay",
    "clip_grad": "optim.clip_grad_norm",
    "amsgrad": "optim.amsgrad",
    "scheduler": "schedule.kind",
    "lr_factor": "schedule.factor",
    "scheduler_patience": "schedule.patience",
    "patience": "early_stopping_patience",
    "max_num_epochs": "epochs",
    "num_epochs": "epochs",
    "valid_batch_size": "eval_batch_size",
    "default_dtype": "dtype",
    "train_file": "data.train",
    "valid_file": "data.valid",
    "test_file": "data.test",
    "valid_fraction": "data.val_fraction",
    "energy_weight": "loss.energy",
    "forces_weight": "loss.forces",
    "stress_weight": "loss.stress",
    "dipole_weight": "loss.dipole",
    "charges_weight": "loss.charges",
    "results_dir": "output_dir",
    "checkpoints_dir": "output_dir",
    "r_max": "model.cutoff",
    "E0s": "model.atomic_energies",
}


def all_keys() -> list[str]:
    """Every dotted key of a training config, ``model.*`` included."""
    from ..model.config import ModelConfig

    sections = {c.__name__: c for c in SECTIONS if c is not TrainConfig}
    keys = []
    for f in dataclasses.fields(TrainConfig):  # (annotations are strings here)
        if str(f.type) in sections:
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(sections[str(f.type)])]
        elif f.name == "model":
            keys += [f"model.{g.name}" for g in dataclasses.fields(ModelConfig)]
        else:
            keys.append(f.name)
    return keys


def suggest_key(key: str) -> str | None:
    """The valid key a user most likely meant by the unknown dotted ``key``: another code's
    name for it, the same name in another section (``lr`` -> ``optim.lr``), or None."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in OTHER_NAMES:
        return OTHER_NAMES[leaf]
    known = all_keys()
    same_leaf = [k for k in known if k.rsplit(".", 1)[-1] == leaf]
    if same_leaf:
        return same_leaf[0]
    return None


def check_model_section(model: dict) -> None:
    """Validate the ``model`` section with the model's own config checks, before any data
    is read (``elements``, when absent, is taken from ``atomic_energies`` or a stand-in,
    since the trainer fills it in from the data later).

    Raises:
        ConfigError: naming the unknown key (with the closest one) or the invalid value.
    """
    from ..model.config import ModelConfig

    trial = dict(model)
    trial.setdefault("elements", sorted(model.get("atomic_energies") or {}) or ["H"])
    try:
        ModelConfig.from_dict(trial)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"config section 'model': {error}") from None


def check_files(config: TrainConfig) -> None:
    """Raise :class:`ConfigError` naming the first data file that does not exist."""
    for key in ("train", "valid", "test"):
        path = getattr(config.data, key)
        if path is not None:
            require_file(path, f"config key 'data.{key}': file", ConfigError)
    if config.init_from is not None:
        require_file(config.init_from, "config key 'init_from': model file", ConfigError)


def config_from_dict(values: dict, *, check_paths: bool = True) -> TrainConfig:
    """Validate a nested dict (keys, types, ranges, files) into a :class:`TrainConfig`.

    Raises:
        ConfigError: naming the unknown key (and the closest valid one), the key with the
            wrong type or value, or the missing file.
    """
    try:
        config = build_dataclass(TrainConfig, values, "")
    except UnknownKeyError as error:
        close = suggest_key(error.key) or error.close
        raise UnknownKeyError(error.key, close) from None
    _check_range(config)
    if config.init_from is None or "cutoff" in config.model:
        check_model_section(config.model)  # (with init_from the source's is checked later)
    if check_paths:
        check_files(config)
    return config


# ----------------------------------------------------------------------------- YAML, overrides
def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping in YAML file ``path`` (an empty file is an empty mapping)."""
    path = require_file(path, "config file", ConfigError)
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {error}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of keys to values, "
            f"got {type(values).__name__}"
        )
    return values


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """A copy of ``values`` with ``key=value`` overrides applied.

    Keys are dotted paths (``optim.lr=1e-3``, ``model.cutoff=4.0``); values are parsed by
    ``yaml.safe_load`` (``null``, ``true``, lists ``[1, 2]`` work). Unknown keys are
    reported later by :func:`config_from_dict`, except inside ``model`` (checked by the
    model's own config).
    """
    values = copy.deepcopy(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"override {item!r} has an empty key part in {key!r}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(
                f"override {item!r}: value {raw!r} is not valid YAML ({error})"
            ) from None
        node = values
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where!r} is not a section")
            node = child
        node[parts[-1]] = value
    return values


def load_config(
    path: str | os.PathLike | None,
    overrides: list[str] | None = None,
    *,
    check_paths: bool = True,
) -> TrainConfig:
    """Read YAML ``path`` (None: start from defaults), apply overrides and validate.

    Relative data paths are taken relative to the current working directory.
    """
    values = read_yaml(path) if path is not None else {}
    values = apply_overrides(values, list(overrides or []))
    return config_from_dict(values, check_paths=check_paths)


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write the effective config to ``path`` as YAML, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    os.replace(tmp, path)
