"""One training step and one evaluation pass, shared by the trainer and the benchmark."""

from __future__ import annotations

import torch

from ..data.dataset import GraphLoader
from ..data.graph import AtomicGraph
from .ema import ExponentialMovingAverage
from .loss import Loss
from .metrics import Metrics
from .targets import OUTPUT_KEYS, structure_mask


def train_step(
    model: torch.nn.Module,
    batch: AtomicGraph,
    loss_fn: Loss,
    optimizer: torch.optim.Optimizer,
    *,
    clip_grad_norm: float | None = None,
    ema: ExponentialMovingAverage | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on ``batch``: forward (with forces/stress when the loss needs
    them, keeping their graph), loss, backward, clipping, step, EMA update.

    Returns the (detached) total loss and its parts. A non-finite loss skips the step
    (the caller decides what to do) so that the weights are never made NaN.
    """
    optimizer.zero_grad(set_to_none=True)
    derivatives = loss_fn.needs_forces or loss_fn.needs_stress or loss_fn.needs_bec
    pred = model(
        batch,
        compute_forces=loss_fn.needs_forces,
        compute_stress=loss_fn.needs_stress,
        create_graph=derivatives,
        compute_bec=loss_fn.needs_bec,
    )
    loss, parts = loss_fn(pred, batch)
    if not torch.isfinite(loss):
        return loss.detach(), {k: v.detach() for k, v in parts.items()}
    loss.backward()
    if clip_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    optimizer.step()
    if ema is not None:
        ema.update(model)
    return loss.detach(), {k: v.detach() for k, v in parts.items()}


def needed_outputs(loss_fn: Loss, graphs: list[AtomicGraph]) -> dict[str, bool]:
    """The derivative switches (``compute_forces``, ``compute_stress``, ``compute_bec``) to
    evaluate ``graphs``: what the loss or the labels need."""
    has = {
        name: any(bool(structure_mask(g, OUTPUT_KEYS[name]).any()) for g in graphs)
        for name in ("forces", "stress", "bec")
    }
    return {
        "compute_forces": loss_fn.needs_forces or has["forces"],
        "compute_stress": loss_fn.needs_stress or has["stress"],
        "compute_bec": loss_fn.needs_bec or has["bec"],
    }


def evaluate_loader(
    model: torch.nn.Module, loader: GraphLoader, loss_fn: Loss, *, keep_values: bool = False
) -> tuple[float, Metrics]:
    """Mean loss per structure and the metrics of ``model`` on every batch of ``loader``.

    Forces and stress need autograd, so this runs with gradients enabled but does not
    keep the derivative graph; outputs are detached batch by batch.
    """
    model.eval()
    switches = needed_outputs(loss_fn, loader.graphs)
    metrics = Metrics(keep_values=keep_values)
    total, count = 0.0, 0
    for batch in loader:
        pred = model(batch, **switches)
        pred = {k: v.detach() for k, v in pred.items()}
        loss, _ = loss_fn(pred, batch)
        total += float(loss) * batch.num_graphs
        count += batch.num_graphs
        metrics.update(pred, batch)
    return total / count, metrics
