"""Mean absolute and root-mean-square errors per property, in reporting units.

Each property is compared on its labelled values (:mod:`hybridpot.train.targets`), every
component counting once and without the loss weights:

| property | values | unit |
|---|---|---|
| energy | energy per atom | meV/atom |
| forces | force components | meV/Å |
| stress | Voigt stress components | meV/Å³ |
| charges | per-atom charges | me (10⁻³ e) |
| dipole | dipole components | me·Å |
| bec | Born effective charge components | me (10⁻³ e) |
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data.graph import AtomicGraph
from .targets import OUTPUT_KEYS, PROPERTIES, pair

#: property -> (unit, factor from the model's unit to the reporting unit)
UNITS = {
    "energy": ("meV/atom", 1000.0),
    "forces": ("meV/Å", 1000.0),
    "stress": ("meV/Å³", 1000.0),
    "charges": ("me", 1000.0),
    "dipole": ("me·Å", 1000.0),
    "bec": ("me", 1000.0),
}


#: property -> unit of the compared values as the model predicts them
MODEL_UNITS = {
    "energy": "eV/atom",
    "forces": "eV/Å",
    "stress": "eV/Å³",
    "charges": "e",
    "dipole": "e·Å",
    "bec": "e",
}


class Metrics:
    """Accumulates errors over batches; :meth:`compute` gives MAE and RMSE per property.

    Args:
        properties: which properties to track (default: all).
        keep_values: also keep (reference, prediction) pairs for parity plots.
    """

    def __init__(self, properties: tuple[str, ...] = PROPERTIES, keep_values: bool = False):
        unknown = [p for p in properties if p not in PROPERTIES]
        if unknown:
            raise ValueError(f"properties must be among {PROPERTIES}, got unknown {unknown}")
        self.properties = tuple(properties)
        self.keep_values = keep_values
        self.abs_sum = dict.fromkeys(self.properties, 0.0)
        self.sq_sum = dict.fromkeys(self.properties, 0.0)
        self.count = dict.fromkeys(self.properties, 0)
        self.values: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {
            p: ([], []) for p in self.properties
        }

    def update(self, pred: dict[str, torch.Tensor], graph: AtomicGraph) -> None:
        """Add one batch's errors (properties the model did not output are skipped)."""
        for name in self.properties:
            if OUTPUT_KEYS[name] not in pred:
                continue  # not predicted (e.g. stress not computed)
            values = pair(pred, graph, name)
            if values is None:
                continue
            diff = (values.pred.detach() - values.ref).double()
            self.abs_sum[name] += float(diff.abs().sum())
            self.sq_sum[name] += float((diff**2).sum())
            self.count[name] += diff.numel()
            if self.keep_values:
                self.values[name][0].append(values.ref.detach().double().cpu().numpy().ravel())
                self.values[name][1].append(values.pred.detach().double().cpu().numpy().ravel())

    def all_reduce(self, context) -> None:
        """Add the error sums and counts of every rank (a
        :class:`hybridpot.train.distributed.Distributed`), so that :meth:`compute` gives
        the metrics of the whole set on every rank. Kept parity values stay per rank."""
        if not context.active:
            return
        sums = torch.tensor(
            [[self.abs_sum[p], self.sq_sum[p], float(self.count[p])] for p in self.properties],
            dtype=torch.float64,
        )
        sums = context.all_reduce_sum(sums)
        for k, name in enumerate(self.properties):
            self.abs_sum[name] = float(sums[k, 0])
            self.sq_sum[name] = float(sums[k, 1])
            self.count[name] = int(round(float(sums[k, 2])))

    def compute(self) -> dict[str, float]:
        """``{"<property>_mae": ..., "<property>_rmse": ...}`` in the units of :data:`UNITS`
        for every property with at least one labelled value."""
        out = {}
        for name in self.properties:
            n = self.count[name]
            if n == 0:
                continue
            factor = UNITS[name][1]
            out[f"{name}_mae"] = factor * self.abs_sum[name] / n
            out[f"{name}_rmse"] = factor * math.sqrt(self.sq_sum[name] / n)
        return out

    def parity(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(reference, prediction) flat arrays in the model's units, or None if empty."""
        if not self.keep_values:
            raise ValueError("parity values were not kept: create Metrics(keep_values=True)")
        refs, preds = self.values[name]
        if not refs:
            return None
        return np.concatenate(refs), np.concatenate(preds)


def format_table(metrics: dict[str, float], counts: dict[str, int] | None = None) -> str:
    """A plain-text table: property, unit, MAE, RMSE (and the number of values)."""
    header = f"{'property':<10} {'unit':<10} {'MAE':>12} {'RMSE':>12}"
    if counts is not None:
        header += f" {'values':>8}"
    lines = [header, "-" * len(header)]
    for name in PROPERTIES:
        if f"{name}_mae" not in metrics:
            continue
        line = (
            f"{name:<10} {UNITS[name][0]:<10} {metrics[f'{name}_mae']:>12.4f} "
            f"{metrics[f'{name}_rmse']:>12.4f}"
        )
        if counts is not None:
            line += f" {counts.get(name, 0):>8d}"
        lines.append(line)
    if len(lines) == 2:
        lines.append("(no labelled property to compare)")
    return "\n".join(lines)
