"""The active-learning loop: train, explore, select, label, add, retrain.

Round r (folder ``output_dir/round_<r>``):

1. ``train.xyz``: the initial labels plus the picks of rounds < r; train on it (the
   model of round r - 1 as warm start, ``uncertainty: true`` so the model is calibrated
   on the validation file), giving ``model.pt`` and the validation errors;
2. stop when the validation force RMSE reaches ``target_force_rmse``, the label budget is
   spent or ``max_rounds`` rounds are trained;
3. explore: MD with the round's model (:mod:`hybridpot.train.explore`) ->
   ``candidates.xyz`` (plus the fixed ``pool`` file, if given);
4. select the ``per_round`` most informative candidates, never a copy of a labelled
   structure (:func:`hybridpot.uncertainty.select_structures`); stop when the largest
   candidate uncertainty is under ``target_uncertainty``;
5. label them with the configured ASE calculator -> ``picked.xyz``.

Every file is written atomically and ``state.json`` records the finished rounds, so an
interrupted loop resumes where it stopped: a round whose training was cut resumes from its
checkpoint, one whose candidates or picks exist reuses them. Each round seeds its
training, MD and selection from ``seed`` and r, so a resumed loop ends bit-identical to
an uninterrupted one (on CPU).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ase.io

from ..fileio import atomic_write_text, require_file
from .explore import ExploreConfig, explore, label_structures, load_calculator
from .schema import ConfigError, UnknownKeyError, build_dataclass

STATE = "state.json"


@dataclass
class LabelConfig:
    """The reference that labels the picks."""

    calculator: str = "hybridpot.reference:TosiFumiCalculator"
    """ASE calculator as ``module:Class``."""

    kwargs: dict = field(default_factory=dict)
    """Keyword arguments of the calculator."""


@dataclass
class ActiveConfig:
    """An active-learning run (``hybridpot active config.yaml``)."""

    initial: str = field(default="", metadata={"required": True})
    """Labelled structures the first model is trained on."""

    validation: str = field(default="", metadata={"required": True})
    """Labelled structures for calibration, early stopping and the error target."""

    training: dict = field(default_factory=dict)
    """A training config (as for ``hybridpot train``) without ``data.train``,
    ``data.valid`` and ``output_dir``, which the loop sets each round."""

    explore: ExploreConfig = field(default_factory=ExploreConfig)
    """MD exploration with the current model (``structures`` may be empty with a pool)."""

    pool: str | None = None
    """A fixed file of unlabelled candidates, added to the explored ones each round."""

    label: LabelConfig = field(default_factory=LabelConfig)
    """The labelling calculator."""

    per_round: int = 8
    """Structures labelled per round."""

    criterion: str = "forces"
    """Selection uncertainty: ``forces`` (largest force sigma) or ``energy`` (per atom)."""

    max_rounds: int = 5
    """Training rounds at most (the last one trains without selecting)."""

    label_budget: int | None = None
    """Stop before the labels (initial + picked) would pass this number."""

    target_force_rmse: float | None = None
    """meV/Å: stop when the validation force RMSE is at or under it."""

    target_uncertainty: float | None = None
    """Stop when the largest candidate uncertainty (eV/Å or eV/atom) is under it."""

    warm_start: bool = True
    """Start each round's training from the previous round's weights."""

    seed: int = 0
    """Seed of the training, exploration and selection of round 0 (round r: seed + r)."""

    output_dir: str = "active-run"
    """Folder of ``state.json``, ``round_<r>/`` and the final ``model.pt`` link."""

    def to_dict(self) -> dict:
        import dataclasses

        return dataclasses.asdict(self)


@dataclass
class ActiveResult:
    """What :func:`run_active` returns: one history row per trained round, the number of
    labels used, the last model file and why the loop stopped."""

    history: list[dict]
    n_labels: int
    model_path: Path
    reason: str


def active_config_from_dict(values: dict, *, check_paths: bool = True) -> ActiveConfig:
    """Validate a dict into an :class:`ActiveConfig` (ConfigError naming the key)."""
    try:
        config = build_dataclass(ActiveConfig, values, "")
    except UnknownKeyError as error:
        raise ConfigError(str(error)) from None
    for name in ("initial", "validation"):
        if not getattr(config, name):
            raise ConfigError(f"the active-learning config needs {name!r} (a labelled file)")
        if check_paths:
            require_file(getattr(config, name), name, ConfigError)
    if check_paths and config.pool:
        require_file(config.pool, "pool", ConfigError)
    if check_paths and config.explore.structures:
        require_file(config.explore.structures, "explore.structures", ConfigError)
    if not config.explore.structures and not config.pool:
        raise ConfigError("give explore.structures (MD starts) or pool (candidates), or both")
    for name in ("per_round", "max_rounds"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    e = config.explore
    if e.steps < 1 or e.stride < 1 or e.stride > e.steps:
        raise ConfigError(
            f"explore.steps and explore.stride must be >= 1 with stride <= steps, got "
            f"{e.steps} and {e.stride}"
        )
    if config.criterion not in ("forces", "energy"):
        raise ConfigError(f"criterion must be 'forces' or 'energy', got {config.criterion!r}")
    for key in ("data", "output_dir"):
        if key == "output_dir" and key in config.training:
            raise ConfigError("training.output_dir is set by the loop (use output_dir)")
    data = config.training.get("data", {}) or {}
    for key in ("train", "valid"):
        if key in data:
            raise ConfigError(f"training.data.{key} is set by the loop (initial / validation)")
    return config


def load_active_config(path: str | os.PathLike) -> ActiveConfig:
    """Read and validate an active-learning YAML config."""
    from .config import read_yaml

    return active_config_from_dict(read_yaml(path))


def _read(path: Path) -> list:
    return list(ase.io.read(path, index=":"))


def _write(frames: list, path: Path) -> None:
    import io

    buffer = io.StringIO()
    ase.io.write(buffer, frames, format="extxyz")
    atomic_write_text(path, buffer.getvalue())


def _round_training(config: ActiveConfig, round_dir: Path, r: int):
    from .config import config_from_dict

    values = copy.deepcopy(config.training)
    values.setdefault("data", {})
    values["data"] = {
        **(values["data"] or {}),
        "train": str(round_dir / "train.xyz"),
        "valid": config.validation,
    }
    values.update(
        output_dir=str(round_dir / "training"),
        uncertainty=True,
        quiet=True,
        seed=config.seed + r,
    )
    return config_from_dict(values)


def _train_round(config: ActiveConfig, round_dir: Path, r: int, previous):
    """The round's trained model and validation metrics (resumed or reused if present)."""
    from ..model import load_model
    from .trainer import CHECKPOINT, METRICS, MODEL, train

    training = _round_training(config, round_dir, r)
    out = Path(training.output_dir)
    if (out / MODEL).is_file() and (out / METRICS).is_file():
        metrics = json.loads((out / METRICS).read_text())["validation"]
        return load_model(out / MODEL), metrics
    resume = (out / CHECKPOINT).is_file()
    init = previous if (config.warm_start and not resume) else None
    result = train(training, resume=resume, overwrite=not resume, init_model=init)
    return load_model(out / MODEL), result.metrics


def _write_state(out: Path, state: dict) -> None:
    atomic_write_text(out / STATE, json.dumps(state, indent=2))


def run_active(
    config: ActiveConfig, on_round_end: Callable[[int, dict], None] | None = None
) -> ActiveResult:
    """Run (or resume) the loop of ``config``; see the module docstring.

    Args:
        config: a validated :class:`ActiveConfig`.
        on_round_end: called with (round, history row) after each round is recorded.
    """
    from ..data.dataset import graphs_from_structures
    from ..uncertainty import select_structures

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        if state.get("config") != json.loads(json.dumps(config.to_dict())):
            raise ConfigError(
                f"{str(state_path)!r} was written by another config; use another output_dir"
            )
    else:
        state = {"config": config.to_dict(), "rounds": [], "finished": None}
    initial = _read(Path(config.initial))
    starts = _read(Path(config.explore.structures)) if config.explore.structures else []
    pool = _read(Path(config.pool)) if config.pool else []
    calculator = None
    previous = None
    labelled = list(initial)
    for row in state["rounds"]:
        if "picked" in row:
            labelled += _read(out / row["dir"] / "picked.xyz")
    r = len(state["rounds"])
    if r > 0:
        from ..model import load_model

        previous = load_model(out / state["rounds"][-1]["model"])
    while state["finished"] is None:
        round_dir = out / f"round_{r:03d}"
        round_dir.mkdir(exist_ok=True)
        if not (round_dir / "train.xyz").is_file():
            _write(labelled, round_dir / "train.xyz")
        model, metrics = _train_round(config, round_dir, r, previous)
        row = {
            "round": r,
            "dir": round_dir.name,
            "model": str(Path(round_dir.name) / "training" / "model.pt"),
            "n_labels": len(labelled),
            "force_rmse": metrics.get("forces_rmse", math.nan),
            "energy_rmse": metrics.get("energy_rmse", math.nan),
        }
        reason = None
        if config.target_force_rmse is not None and row["force_rmse"] <= config.target_force_rmse:
            reason = "target_force_rmse reached"
        elif r + 1 >= config.max_rounds:
            reason = "max_rounds reached"
        elif config.label_budget is not None and (
            len(labelled) + config.per_round > config.label_budget
        ):
            reason = "label_budget reached"
        if reason is None:
            candidates_path = round_dir / "candidates.xyz"
            if not candidates_path.is_file():
                frames = explore(model, starts, config.explore, config.seed + r) if starts else []
                _write(frames + pool, candidates_path)
            candidates = _read(candidates_path)
            picked_path = round_dir / "picked.xyz"
            selection_path = round_dir / "selection.json"
            if selection_path.is_file():
                row.update(json.loads(selection_path.read_text()))
            if not picked_path.is_file():
                cutoff = float(model.cutoff)
                chosen = select_structures(
                    model,
                    graphs_from_structures(candidates, cutoff, source=str(candidates_path)),
                    config.per_round,
                    exclude=graphs_from_structures(labelled, cutoff, source="labelled"),
                    criterion=config.criterion,
                )
                row["max_uncertainty"] = float(chosen.uncertainty.max())
                atomic_write_text(
                    selection_path, json.dumps({"max_uncertainty": row["max_uncertainty"]})
                )
                if (
                    config.target_uncertainty is not None
                    and row["max_uncertainty"] < config.target_uncertainty
                ):
                    reason = "target_uncertainty reached"
                elif not chosen.indices:
                    reason = "no new candidate"
                else:
                    if calculator is None:
                        calculator = load_calculator(config.label.calculator, config.label.kwargs)
                    picks = label_structures([candidates[i] for i in chosen.indices], calculator)
                    _write(picks, picked_path)
            if picked_path.is_file():
                picks = _read(picked_path)
                labelled += picks
                row["picked"] = len(picks)
        state["rounds"].append(row)
        state["finished"] = reason
        _write_state(out, state)
        previous = model
        if on_round_end is not None:
            on_round_end(r, row)
        r += 1
    return ActiveResult(
        history=state["rounds"],
        n_labels=state["rounds"][-1]["n_labels"],
        model_path=out / state["rounds"][-1]["model"],
        reason=state["finished"],
    )
