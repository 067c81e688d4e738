"""One training step and one evaluation pass, shared by the trainer and the benchmark."""

from __future__ import annotations

import torch

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
    context=None,
    forward: torch.nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One optimiser step on ``batch``: forward (with forces/stress when the loss needs
    them, keeping their graph), loss, backward, clipping, step, EMA update.

    Returns the (detached) total loss and its parts. A non-finite loss skips the step
    (the caller decides what to do) so that the weights are never made NaN.

    Multi-process (``context`` of several ranks, ``forward`` the model wrapped in
    ``DistributedDataParallel``): ``batch`` is this rank's part of the global batch, the
    loss is this rank's share of the global loss (global normalisation,
    :meth:`Loss.__call__`), and the returned loss and parts are the GLOBAL values
    (summed over ranks), identical on every rank. DDP averages gradients over the K
    ranks, so the share is multiplied by K before ``backward``: the averaged gradient is
    then the gradient of the global loss.
    """
    optimizer.zero_grad(set_to_none=True)
    derivatives = loss_fn.needs_forces or loss_fn.needs_stress or loss_fn.needs_bec
    shared = context is not None and context.active
    pred = (forward if forward is not None else model)(
        batch,
        compute_forces=loss_fn.needs_forces,
        compute_stress=loss_fn.needs_stress,
        create_graph=derivatives,
        compute_bec=loss_fn.needs_bec,
    )
    loss, parts = loss_fn(pred, batch, context=context if shared else None)
    if shared:
        names = sorted(parts)
        local = torch.stack([loss.detach(), *(parts[k].detach() for k in names)])
        summed = context.all_reduce_sum(local)  # every rank sees the global values
        global_loss, global_parts = summed[0], dict(zip(names, summed[1:]))
        if not torch.isfinite(global_loss):  # every rank skips the step together
            return global_loss, global_parts
        (loss * context.world_size).backward()
        loss, parts = global_loss, global_parts
    else:
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
    model: torch.nn.Module,
    loader,
    loss_fn: Loss,
    *,
    keep_values: bool = False,
    context=None,
) -> tuple[float, Metrics]:
    """Mean loss per structure and the metrics of ``model`` on every batch of ``loader``.

    Forces and stress need autograd, so this runs with gradients enabled but does not
    keep the derivative graph; outputs are detached batch by batch. Forces (stress) are
    computed when the loss needs them or the batch has their labels.

    Args:
        model: the (unwrapped) model.
        loader: a :class:`~hybridpot.data.dataset.GraphLoader` or a
            :class:`~hybridpot.data.loader.ShardedLoader`.
        loss_fn: the training loss.
        keep_values: keep (reference, prediction) pairs for parity plots (this rank's).
        context: with several ranks, ``loader`` is this rank's shard; losses use global
            normalisation and the loss and metric sums are added over the ranks, so every
            rank returns the same numbers as one process over the whole set.
    """
    model.eval()
    shared = context is not None and context.active
    metrics = Metrics(keep_values=keep_values)
    total, count = None, 0
    for item in loader:
        batch, n = (item.graph, item.num_global) if hasattr(item, "graph") else (item, None)
        n = batch.num_graphs if n is None else n
        pred = model(batch, **needed_outputs(loss_fn, [batch]))
        pred = {k: v.detach() for k, v in pred.items()}
        loss, _ = loss_fn(pred, batch, context=context if shared else None)
        total = loss.double() * n if total is None else total + loss.double() * n
        count += n
        if not (hasattr(item, "num_local") and item.num_local == 0):
            metrics.update(pred, batch)
    if shared:
        total = context.all_reduce_sum(total)
        metrics.all_reduce(context)
    return float(total) / count, metrics
