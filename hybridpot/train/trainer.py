"""The training loop: AdamW, LR schedule, clipping, EMA, early stopping, exact resume.

Every epoch the trainer takes one optimiser step per shuffled batch, validates with the
averaged (EMA) weights, steps the schedule, appends a row to the CSV log and writes a
checkpoint atomically. The checkpoint holds everything the next epoch depends on (weights,
optimiser, schedule, EMA, best weights, early-stopping counters, history and the RNG
states; the batch order of epoch e is a function of the seed and e), so a run resumed
from it ends bit-identical to one that was never interrupted (on CPU).

Several processes (``torchrun --nproc-per-node K -m hybridpot.cli train ...`` or
``hybridpot train --devices K``): every rank holds the model, wrapped in
``DistributedDataParallel``, and trains on its slice of each global batch of
``batch_size x K`` structures (:class:`hybridpot.data.loader.ShardedLoader`); statistics
are computed once (rank 0) and broadcast; losses, metrics and early stopping are summed
over ranks, so every rank takes the same decisions; only rank 0 writes files. A
checkpoint does not depend on the number of ranks, so ``--resume`` may use another.

Output folder: ``checkpoint.pt`` (training state), ``model.pt`` (the best EMA weights,
:func:`hybridpot.model.save_model` format), ``config.yaml`` (the effective config),
``log.csv``, ``metrics.json``, the PNG plots and, from ``hybridpot train``, ``train.log``
(the console output, appended when a run is resumed).
"""

from __future__ import annotations

import copy
import datetime
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__, keys
from ..data.loader import ShardedLoader
from ..data.statistics import has_label
from ..device import resolve_device
from ..fileio import remove_stale_temporaries
from .checkpoint import (
    RESUMABLE_CHANGES,
    changed_entries,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import ConfigError, TrainConfig, config_from_dict, save_config
from .distributed import Distributed, from_environment
from .ema import ExponentialMovingAverage
from .logs import write_csv, write_json
from .loss import Loss
from .metrics import Metrics
from .plots import plot_learning_curves, plot_parity
from .setup import DTYPES, PreparedData, complete_model_config, prepare_data
from .steps import evaluate_loader, train_step

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
CONFIG = "config.yaml"
LOG = "log.csv"
#: Entries of a trainer checkpoint (:meth:`Trainer._state`).
TRAINER_STATE = (
    "epoch",
    "config",
    "model_config",
    "model",
    "optimizer",
    "scheduler",
    "ema",
    "best",
    "stopped_early",
    "history",
    "rng",
)
#: The console output of ``hybridpot train`` (appended on --resume).
TRAIN_LOG = "train.log"
METRICS = "metrics.json"
PLOTS = ("learning_curves.png", "parity_energy.png", "parity_forces.png", "parity_charges.png")


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        model: the exported model (best EMA weights), in the training dtype.
        history: one dict per epoch (the CSV rows).
        best_epoch: epoch of the exported weights.
        metrics: validation metrics of the exported weights (MAE/RMSE, reporting units).
        test_metrics: the same on the test set (empty without a test set).
        output_dir: where the files are.
        stop_reason: ``"patience"`` (early stopping: converged on the validation loss),
            ``"max_time"`` (the wall-time budget) or ``"epochs"`` (all epochs run).
    """

    model: torch.nn.Module
    history: list[dict]
    best_epoch: int
    metrics: dict = field(default_factory=dict)
    test_metrics: dict = field(default_factory=dict)
    output_dir: Path = Path(".")
    stop_reason: str = "epochs"


class Trainer:
    """Train a hybrid model as described by a :class:`TrainConfig`.

    Args:
        config: the validated training config.
        resume: continue from ``output_dir/checkpoint.pt``.
        overwrite: start afresh even if ``output_dir`` holds a checkpoint.
        init_model: warm start: a fresh run starts from this model's configuration and
            weights (not its uncertainty state) instead of a new initialisation; ignored
            when resuming (the checkpoint has the weights).
        distributed: this process's place among several ranks; None: read ``torchrun``'s
            environment (a single process when there is none).

    Raises:
        ConfigError: a checkpoint exists and neither ``resume`` nor ``overwrite`` is set,
            ``resume`` without a checkpoint, or a resumed config that differs from the
            checkpoint's in other entries than those that may change (``epochs``,
            ``early_stopping_patience``, ``quiet``, ``plots``, ``device``, ``output_dir``,
            ``data.cache_dir``).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        resume: bool = False,
        overwrite: bool = False,
        init_model: torch.nn.Module | None = None,
        distributed: Distributed | None = None,
    ):
        from ..model import build_model

        self.config = config
        try:  # before anything is read or written: a device this machine lacks is a user error
            self.device = resolve_device(config.device, "config key 'device'")
        except (TypeError, ValueError) as error:
            raise ConfigError(str(error)) from None
        self.dist = distributed if distributed is not None else from_environment(config.device)
        if self.dist.active and self.device.type == "cuda":
            self.device = torch.device(self.dist.device)
        main = self.dist.is_main
        self.out = Path(config.output_dir)
        checkpoint_path = self.out / CHECKPOINT
        checkpoint = None
        if resume:
            if not checkpoint_path.is_file():
                raise ConfigError(f"cannot resume: no checkpoint {str(checkpoint_path)!r}")
            checkpoint = load_checkpoint(checkpoint_path)
            missing = [k for k in TRAINER_STATE if k not in checkpoint]
            if missing:
                raise ConfigError(
                    f"cannot resume: checkpoint {str(checkpoint_path)!r} has no {missing} "
                    f"(not written by the trainer)"
                )
            self._check_resumable(
                checkpoint["config"], checkpoint["model_config"], checkpoint.get("world_size", 1)
            )
        elif checkpoint_path.is_file() and not overwrite:
            raise ConfigError(
                f"output_dir {str(self.out)!r} already holds a checkpoint; pass --resume to "
                f"continue it, --overwrite to start again, or set output_dir=... to another folder"
            )
        elif overwrite and main:
            # Remove the previous run's outputs so that none outlives the new run.
            for name in (CHECKPOINT, MODEL, LOG, METRICS, CONFIG, TRAIN_LOG, *PLOTS):
                (self.out / name).unlink(missing_ok=True)
        if main:
            # A run killed during a write leaves its temporary file (the target is intact).
            remove_stale_temporaries(self.out, (CHECKPOINT, MODEL, LOG, METRICS, *PLOTS))
        self.dist.barrier()  # no rank reads the folder while rank 0 clears it
        self.dtype = DTYPES[config.dtype]
        self.progress = not config.quiet and main

        source = None
        if checkpoint is None and config.init_from is not None:
            if init_model is not None:
                raise ConfigError(
                    "init_from (a model file to fine-tune) and init_model (a warm start) are "
                    "both given; give one"
                )
            from .finetune import load_source

            source = load_source(config.init_from)
        self.data: PreparedData = prepare_data(
            config,
            progress=self.progress,
            model=(
                checkpoint["model_config"]
                if checkpoint is not None
                else (source.config if source is not None else None)
            ),
        )
        if config.uncertainty and not self.data.valid:
            raise ConfigError(
                "uncertainty: true needs a validation set to calibrate on (data.valid or "
                "data.val_fraction > 0)"
            )
        warm = init_model is not None and checkpoint is None
        if checkpoint is not None:
            self.model_config = checkpoint["model_config"]
        elif source is not None:
            from .finetune import finetune_model_config

            # Statistics are computed once, on rank 0, and sent to the others.
            self.model_config = self.dist.broadcast_object(
                finetune_model_config(config, self.data, source) if main else None
            )
        elif warm:
            self.model_config = {**init_model.config, "uncertainty": False}
        else:
            self.model_config = self.dist.broadcast_object(
                complete_model_config(config, self.data) if main else None
            )
        torch.manual_seed(config.seed)
        self.model = build_model(self.model_config).to(device=self.device, dtype=self.dtype)
        if warm:
            state = {
                k: v for k, v in init_model.state_dict().items() if not k.startswith("uncertainty.")
            }
            self.model.load_state_dict(state)
        if checkpoint is None and source is None and not warm:
            # A fresh model with a Coulomb term starts in the sign convention's basin.
            self._orient_charges()
            if "atomic_energies" not in config.model:
                self._offsets_with_coulomb()
        self.model_config = self.model.config  # with every default filled in
        if source is not None:
            from .finetune import transfer_weights

            transfer_weights(source, self.model)
        self.frozen = self._freeze(config.freeze)
        self.forward = self.model
        if self.dist.active:
            # Some parameters may not reach the loss (the charge readout of a model
            # without a Coulomb term and without a charge loss): DDP must look for them.
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        o = config.optim
        self.optimizer = torch.optim.AdamW(
            [p for p in self.model.parameters() if p.requires_grad],
            lr=o.lr,
            betas=tuple(o.betas),
            eps=o.eps,
            weight_decay=o.weight_decay,
            amsgrad=o.amsgrad,
        )
        s = config.schedule
        if s.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, factor=s.factor, patience=s.patience, min_lr=s.min_lr
            )
        elif s.kind == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=config.epochs, eta_min=s.min_lr
            )
        else:
            self.scheduler = None
        self.ema = (
            ExponentialMovingAverage(self.model, o.ema_decay) if o.ema_decay is not None else None
        )
        self.loss = Loss(config.loss)
        self.train_loader = self._loader(self.data.train, config.batch_size, shuffle=True)
        self.valid_loader = self._loader(self.data.valid) if len(self.data.valid) else None
        self.test_loader = self._loader(self.data.test) if len(self.data.test) else None
        # Training state (saved in every checkpoint).
        self.epoch = 0
        self.history: list[dict] = []
        self.best_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped_early = False
        self.best_state = self._export_state()
        if checkpoint is not None:
            self._load_state(checkpoint)

    def _offsets_with_coulomb(self) -> None:
        """Refit the fitted reference energies on E - E_coulomb(initial charges)
        (:mod:`hybridpot.train.offsets`), over up to 1,000 training structures."""
        from .offsets import coulomb_offsets, shift_atomic_energies

        if self.model.electrostatics is None or not self.model.model_config.atomic_energies:
            return
        train = self.data.train
        picks = sorted({int(k) for k in np.linspace(0, len(train) - 1, min(1000, len(train)))})
        sample = [g for g in (train[k] for k in picks) if has_label(g, keys.ENERGY)]
        offsets = coulomb_offsets(self.model, self._graphs(sample))
        shift_atomic_energies(self.model, offsets)

    def _refit_offsets(self) -> dict | None:
        """The end-of-training refit of the reference energies (``refit_atomic_energies``,
        :func:`hybridpot.train.offsets.residual_offsets`): applied if it helps; returns
        its report (None when skipped)."""
        from .offsets import residual_offsets, shift_atomic_energies

        if (
            not self.config.refit_atomic_energies
            or "atomic_energies" in self.config.model
            or not self.model.model_config.atomic_energies
            or not len(self.data.train)
        ):
            return None
        report = residual_offsets(
            self.model,
            self._graphs(self.data.train),
            self._graphs(self.data.valid) if len(self.data.valid) else None,
        )
        report["applied"] = bool(report["improves"])
        if report["applied"]:
            shift_atomic_energies(self.model, report["shift"], sign=+1.0)
        return report

    def _orient_charges(self) -> bool:
        """Apply the charge sign convention (:mod:`hybridpot.model.charge_sign`)
        on up to 64 training structures, evenly spaced; True if the sign was flipped.
        Every rank computes the same flip from the same structures."""
        from ..model.charge_sign import orient_charges

        train = self.data.train
        count = len(train)
        if count == 0:
            return False
        picks = sorted({int(k) for k in np.linspace(0, count - 1, min(64, count))})
        sample = [train[k] for k in picks]
        with torch.no_grad():
            return orient_charges(self.model, self._graphs(sample))

    def _graphs(self, graphs):
        """Batched graphs of ``graphs`` on this trainer's device (all on every rank)."""
        return (item.graph for item in self._loader(graphs, shard=False))

    def _loader(self, graphs, batch_size=None, *, shuffle=False, shard=True):
        """This rank's loader of ``graphs`` (validation/test batches: ``eval_batch_size``)."""
        c = self.config
        return ShardedLoader(
            graphs,
            batch_size or c.eval_batch_size or c.batch_size,
            shuffle=shuffle,
            seed=c.seed,
            rank=self.dist.rank if shard else 0,
            world_size=self.dist.world_size if shard else 1,
            num_workers=c.data.num_workers,
            device=self.device,
        )

    def _freeze(self, patterns: list[str]) -> list[str]:
        """Stop training the parameters whose names match any glob in ``patterns``."""
        if not patterns:
            return []
        from .finetune import freeze_parameters

        try:
            return freeze_parameters(self.model, patterns)
        except ValueError as error:
            raise ConfigError(f"config key 'freeze': {error}") from None

    # ------------------------------------------------------------------ resume
    def _check_resumable(self, saved: dict, saved_model: dict, saved_world: int) -> None:
        """Refuse a resumption whose config changes more than :data:`RESUMABLE_CHANGES`.

        ``saved_model`` is the checkpoint's model as built (derived entries such as
        ``elements``, ``avg_num_neighbors`` and ``atomic_energies`` filled in): the
        ``config.yaml`` a run writes holds it, so resuming from that file is resuming the
        same run. The config then takes the checkpoint's original model section back, so
        the next checkpoint still resumes from the original config as well.
        """
        try:  # entries added since the checkpoint was written take their defaults
            saved = config_from_dict(saved, check_paths=False).to_dict()
        except ConfigError:
            pass
        current = self.config.to_dict()
        if current["model"] != saved.get("model") and current["model"] == saved_model:
            self.config.model = copy.deepcopy(saved["model"])
            current = self.config.to_dict()
        # Another number of ranks may resume with the per-rank batch sizes that keep the
        # global batches (and so every later step) the same.
        world = self.dist.world_size
        for key in ("batch_size", "eval_batch_size"):
            old, new = saved.get(key), current.get(key)
            if old is not None and new is not None and old * saved_world == new * world:
                saved = {**saved, key: new}
        fixed = [k for k in changed_entries(saved, current) if k not in RESUMABLE_CHANGES]
        if fixed:
            raise ConfigError(
                f"cannot resume: config entries {fixed} differ from the checkpoint's; only "
                f"{sorted(RESUMABLE_CHANGES)} may change when resuming"
            )

    def _state(self) -> dict:
        return {
            "epoch": self.epoch,
            "config": self.config.to_dict(),
            "model_config": self.model_config,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "best": {
                "loss": self.best_loss,
                "epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs,
                "state": self.best_state,
            },
            "stopped_early": self.stopped_early,
            "history": self.history,
            "rng": rng_state(),
            "world_size": self.dist.world_size,
        }

    def _load_state(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as error:
            raise ConfigError(
                f"cannot resume: the checkpoint's weights do not fit the model built by this "
                f"version of hybridpot ({' '.join(str(error).split())[:300]})"
            ) from None
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        best = state["best"]
        self.best_loss = float(best["loss"])
        self.best_epoch = int(best["epoch"])
        self.bad_epochs = int(best["bad_epochs"])
        self.best_state = best["state"]
        # Judged again under this config's patience, so that raising
        # early_stopping_patience on --resume reopens a run that patience stopped.
        patience = self.config.early_stopping_patience
        self.stopped_early = patience is not None and self.bad_epochs >= patience
        self.history = list(state["history"])
        set_rng_state(state["rng"])

    def _export_state(self) -> dict[str, torch.Tensor]:
        """The weights that would be exported now: the EMA ones (or the raw ones)."""
        if self.ema is None:
            return copy.deepcopy(self.model.state_dict())
        with self.ema.applied(self.model):
            return copy.deepcopy(self.model.state_dict())

    # ------------------------------------------------------------------ loops
    def train_epoch(
        self, on_step: Callable[[Trainer, float], None] | None = None
    ) -> dict[str, float]:
        """One pass over the shuffled training set; returns mean losses (per structure).

        Args:
            on_step: called with the trainer and the step's loss (of the global batch)
                after every optimiser step.
        """
        self.model.train()
        self.train_loader.set_epoch(self.epoch)
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        bar = tqdm(
            self.train_loader,
            desc=f"epoch {self.epoch + 1}",
            leave=False,
            disable=not self.progress,
        )
        for step, item in enumerate(bar):
            loss, parts = train_step(
                self.model,
                item.graph,
                self.loss,
                self.optimizer,
                clip_grad_norm=self.config.optim.clip_grad_norm,
                ema=self.ema,
                context=self.dist,
                forward=self.forward,
            )
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {loss.item()} at epoch {self.epoch + 1}, step {step}; "
                    f"try a smaller optim.lr or float64"
                )
            n = item.num_global  # the losses are those of the global batch
            for name, value in {"loss": loss, **parts}.items():
                totals[name] = totals.get(name, 0.0) + float(value.detach()) * n
                counts[name] = counts.get(name, 0) + n
            bar.set_postfix(loss=f"{loss.item():.4g}")
            if on_step is not None:
                on_step(self, float(loss))
        return {
            ("train_loss" if k == "loss" else f"train_{k}_loss"): totals[k] / counts[k]
            for k in totals
        }

    def evaluate(
        self, loader: ShardedLoader, *, keep_values: bool = False
    ) -> tuple[float, Metrics]:
        """Loss (mean per structure) and metrics of the current weights on ``loader``
        (summed over the ranks when ``loader`` is this rank's shard)."""
        sharded = loader.world_size > 1
        return evaluate_loader(
            self.model,
            loader,
            self.loss,
            keep_values=keep_values,
            context=self.dist if sharded else None,
        )

    def _validate(self) -> dict[str, float]:
        if self.valid_loader is None:
            return {}
        if self.ema is None:
            loss, metrics = self.evaluate(self.valid_loader)
        else:
            with self.ema.applied(self.model):
                loss, metrics = self.evaluate(self.valid_loader)
        return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.compute().items()}}

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        on_epoch_end: Callable[[Trainer], None] | None = None,
        on_step: Callable[[Trainer, float], None] | None = None,
    ) -> TrainResult:
        """Train until ``epochs`` or early stopping, then export and report.

        Args:
            on_epoch_end: called with the trainer after each epoch's checkpoint is written.
            on_step: called with the trainer and the loss after every optimiser step.
        """
        main = self.dist.is_main
        if main:
            save_config(self._effective_config(), self.out / CONFIG)
        epochs = self.config.epochs
        patience = self.config.early_stopping_patience
        bar = tqdm(total=epochs, initial=self.epoch, desc="training", disable=not self.progress)
        while self.epoch < epochs and not self.stopped_early and not self._out_of_time():
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            row = {
                "epoch": self.epoch + 1,
                "lr": lr,
                **self.train_epoch(on_step),
                **self._validate(),
            }
            monitored = row.get("val_loss", row["train_loss"])
            if self.scheduler is not None:
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(monitored)
                else:
                    self.scheduler.step()
            self.epoch += 1
            if monitored < self.best_loss:
                self.best_loss, self.best_epoch, self.bad_epochs = monitored, self.epoch, 0
                self.best_state = self._export_state()
            else:
                self.bad_epochs += 1
                self.stopped_early = patience is not None and self.bad_epochs >= patience
            row["time_s"] = time.perf_counter() - start
            self.history.append(row)
            if main:  # one writer; the others wait so that no rank runs ahead of the files
                write_csv(self.history, self.out / LOG)
                save_checkpoint(self._state(), self.out / CHECKPOINT)
            self.dist.barrier()
            bar.update(1)
            if self.progress:
                tqdm.write(self._summary(row))
            if on_epoch_end is not None:
                on_epoch_end(self)
        bar.close()
        return self.finish()

    def training_seconds(self) -> float:
        """Summed epoch times (s) of the run so far, resumed parts included."""
        return float(sum(row.get("time_s", 0.0) for row in self.history))

    def _out_of_time(self) -> bool:
        """Whether ``max_time`` is spent (rank 0 decides, so every rank stops together)."""
        limit = self.config.max_time
        if limit is None:
            return False
        spent = self.training_seconds() >= limit if self.dist.is_main else None
        return bool(self.dist.broadcast_object(spent))

    @property
    def stop_reason(self) -> str:
        """Why training ended (or would end now): ``"patience"`` (early stopping),
        ``"max_time"``, ``"epochs"`` (all epochs run) or ``"running"``."""
        if self.stopped_early:
            return "patience"
        if self.epoch >= self.config.epochs:
            return "epochs"
        if self.config.max_time is not None and self.training_seconds() >= self.config.max_time:
            return "max_time"
        return "running"

    def _summary(self, row: dict) -> str:
        parts = [
            f"epoch {row['epoch']:4d}",
            f"lr {row['lr']:.2e}",
            f"train {row['train_loss']:.4g}",
        ]
        if "val_loss" in row:
            parts.append(f"val {row['val_loss']:.4g}")
        for name, unit in (("energy", "meV/atom"), ("forces", "meV/Å")):
            if f"val_{name}_rmse" in row:
                parts.append(f"{name} RMSE {row[f'val_{name}_rmse']:.3g} {unit}")
        return " | ".join(parts)

    def _effective_config(self) -> TrainConfig:
        effective = copy.deepcopy(self.config)
        effective.model = dict(self.model_config)
        return effective

    def finish(self) -> TrainResult:
        """Export the best weights, evaluate them, and write model, metrics and plots."""
        from ..model import save_model
        from ..model.io import FRAGMENT_KEY_FIELDS

        self.model.load_state_dict(self.best_state)
        metrics: dict = {}
        test_metrics: dict = {}
        parity_source = None
        if not self.dist.is_main:  # rank 0 evaluates the whole sets and writes the files
            self.dist.barrier()
            return TrainResult(
                self.model,
                self.history,
                self.best_epoch,
                output_dir=self.out,
                stop_reason=self.stop_reason,
            )
        from ..model.charge_sign import sign_is_free

        # Only where the flip is exact for the data (no label fixes the sign).
        if sign_is_free(self.data.train, self.loss.weights) and sign_is_free(
            self.data.valid, self.loss.weights
        ):
            self._orient_charges()
        refit = self._refit_offsets()
        if self.config.uncertainty:
            from ..uncertainty import fit_uncertainty

            fit_uncertainty(
                self.model,
                self.data.train,
                self.data.valid,
                batch_size=self.config.eval_batch_size or self.config.batch_size,
            )
        if len(self.data.valid):
            _, m = self.evaluate(self._loader(self.data.valid, shard=False), keep_values=True)
            metrics, parity_source = m.compute(), m
        if len(self.data.test):
            _, m = self.evaluate(self._loader(self.data.test, shard=False), keep_values=True)
            test_metrics, parity_source = m.compute(), m
        metadata = {
            "hybridpot_version": __version__,
            "torch_version": torch.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "training": {
                **self.data.provenance,
                "epochs_run": self.epoch,
                "best_epoch": self.best_epoch,
                "stopped_early": self.stopped_early,
                "stop_reason": self.stop_reason,
                "training_seconds": self.training_seconds(),
                "atomic_energies_refit": refit,
                "seed": self.config.seed,
                "dtype": self.config.dtype,
                "loss_weights": self.loss.weights,
                "ema_decay": self.config.optim.ema_decay,
            },
            "validation_metrics": metrics,
            "test_metrics": test_metrics,
        }
        save_model(
            self.model,
            self.out / MODEL,
            metadata=metadata,
            total_charge_key=self.config.data.total_charge_key,
            fragment_keys={
                field: getattr(self.config.data, field) for field in FRAGMENT_KEY_FIELDS.values()
            },
        )
        write_json(
            {
                "validation": metrics,
                "test": test_metrics,
                "best_epoch": self.best_epoch,
                "epochs_run": self.epoch,
                "stop_reason": self.stop_reason,
            },
            self.out / METRICS,
        )
        if self.config.plots and self.history:
            plot_learning_curves(self.history, self.out / PLOTS[0])
            if parity_source is not None:
                for name in ("energy", "forces", "charges"):
                    values = parity_source.parity(name)
                    if values is not None:
                        plot_parity(*values, name, self.out / f"parity_{name}.png")
        self.dist.barrier()
        return TrainResult(
            model=self.model,
            history=self.history,
            best_epoch=self.best_epoch,
            metrics=metrics,
            test_metrics=test_metrics,
            output_dir=self.out,
            stop_reason=self.stop_reason,
        )


def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    init_model: torch.nn.Module | None = None,
) -> TrainResult:
    """Train a model from ``config`` (see :class:`Trainer`) and return the result."""
    return Trainer(config, resume=resume, overwrite=overwrite, init_model=init_model).fit()
