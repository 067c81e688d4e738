"""The training loss: a weighted sum of per-property losses over labelled values only.

    L = sum_p w_p * L_p,   L_p = sum_r s_r * sum_c rho(pred_rc - ref_rc) / (C * sum_r s_r)

with p over energy per atom, forces, stress, charges, dipole and Born effective charges
(rows r and components c
as in :mod:`hybridpot.train.targets`), s_r the structure's weight and rho the squared
error or the Huber function. A property that no structure in the batch carries (or whose
weight is 0) adds nothing; it never counts as a zero label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.graph import AtomicGraph
from .config import LossConfig
from .targets import PROPERTIES, pair


def elementwise(diff: torch.Tensor, kind: str, delta: float) -> torch.Tensor:
    """rho(diff) elementwise: ``mse`` diff², or ``huber`` (0.5 d² below ``delta``, else
    delta (|d| - delta/2))."""
    if kind == "mse":
        return diff**2
    if kind == "huber":
        return F.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta)
    raise ValueError(f"loss kind must be 'mse' or 'huber', got {kind!r}")


class Loss:
    """Weighted multi-property loss (weights and kind from :class:`LossConfig`)."""

    def __init__(self, config: LossConfig | None = None):
        self.config = config or LossConfig()
        elementwise(torch.zeros(1), self.config.kind, self.config.huber_delta)

    @property
    def weights(self) -> dict[str, float]:
        """Property -> weight, for the properties with a positive weight."""
        return {p: getattr(self.config, p) for p in PROPERTIES if getattr(self.config, p) > 0}

    @property
    def needs_forces(self) -> bool:
        return "forces" in self.weights

    @property
    def needs_stress(self) -> bool:
        return "stress" in self.weights

    @property
    def needs_bec(self) -> bool:
        return "bec" in self.weights

    def terms(
        self, pred: dict[str, torch.Tensor], graph: AtomicGraph
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Property -> (numerator sum_r s_r sum_c rho, denominator C * sum_r s_r) of L_p
        for the properties with weight > 0 that ``graph`` labels (others are left out).

        The numerator is differentiable; the denominator is a detached scalar.
        """
        out = {}
        for name in self.weights:
            values = pair(pred, graph, name)
            if values is None:
                continue
            rho = elementwise(values.pred - values.ref, self.config.kind, self.config.huber_delta)
            numerator = (values.weight[:, None] * rho).sum()
            out[name] = (numerator, values.weight.sum().detach() * rho.shape[1])
        return out

    def property_loss(
        self, pred: dict[str, torch.Tensor], graph: AtomicGraph, name: str
    ) -> torch.Tensor | None:
        """L_p of one property, or None when nothing in the batch is labelled."""
        values = pair(pred, graph, name)
        if values is None:
            return None
        total_weight = values.weight.sum()
        if not bool(total_weight > 0):
            return None
        rho = elementwise(values.pred - values.ref, self.config.kind, self.config.huber_delta)
        return (values.weight[:, None] * rho).sum() / (total_weight * rho.shape[1])

    def __call__(
        self, pred: dict[str, torch.Tensor], graph: AtomicGraph, *, context=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, {property: L_p})`` for the properties with weight > 0 and labels.

        ``total`` is a differentiable scalar (zero, still differentiable, when nothing is
        labelled).

        Args:
            pred: model outputs of this batch.
            graph: the batch with its labels.
            context: a :class:`hybridpot.train.distributed.Distributed` of several ranks,
                each holding one part of a global batch. Then every L_p is normalised by
                the GLOBAL denominator (C times the summed weights of all ranks), and the
                returned values are this rank's share: summed over the ranks they are the
                loss of the global batch, and so are their gradients. None: one process.
        """
        if context is not None and context.active:
            return self._shared(pred, graph, context)
        parts: dict[str, torch.Tensor] = {}
        total = None
        for name, weight in self.weights.items():
            value = self.property_loss(pred, graph, name)
            if value is None:
                continue
            parts[name] = value
            total = weight * value if total is None else total + weight * value
        if total is None:
            total = _zero(pred)
        return total, parts

    def _shared(self, pred, graph, context) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """This rank's share of the loss of a global batch split across ranks."""
        names = list(self.weights)
        terms = self.terms(pred, graph)
        zero = _zero(pred)
        local = torch.stack(
            [terms[n][1].to(zero.dtype) if n in terms else zero.detach() for n in names]
        )
        denominators = context.all_reduce_sum(local)  # one collective per step
        parts: dict[str, torch.Tensor] = {}
        total = zero
        for k, name in enumerate(names):
            if not bool(denominators[k] > 0):
                continue  # no rank has this label in the global batch
            numerator = terms[name][0] if name in terms else zero
            parts[name] = numerator / denominators[k]
            total = total + self.weights[name] * parts[name]
        return total, parts


def _zero(pred: dict[str, torch.Tensor]) -> torch.Tensor:
    """A differentiable scalar zero connected to the model's output."""
    energy = next(iter(pred.values()))
    return 0.0 * energy.sum()
