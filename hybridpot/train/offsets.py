"""Per-element energy offsets that settle: fitted with the Coulomb energy, refitted at the end.

The trainer fits the reference energies E0_Z by least squares on the labelled energies
(:func:`hybridpot.data.statistics.fit_atomic_energies`). Two corrections keep them
consistent with the hybrid model:

* **Before training** (:func:`coulomb_offsets`). A hybrid model adds the Coulomb energy of
  its charges, which is not zero before training and, being extensive, projects onto the
  compositions: left alone, the network would first have to unlearn it. The offsets are
  refitted on E - E_coulomb(initial charges), which by linearity of least squares is the
  plain fit minus the fit of the Coulomb energies alone.
* **After training** (:func:`residual_offsets`). A network's per-atom output has no
  gradient pressure to get the composition average exactly right at the end of a finite
  run (our NaCl(aq) benchmark found 20-60 meV per ion left over). One least-squares fit
  of the per-atom energy residuals on the per-atom compositions removes it; the trainer
  keeps it only if it lowers the validation energy error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from .. import keys


def _compositions_and_values(
    model, batches: Iterable, values: Callable
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts (B, S), values (B,))`` over ``batches``: the element counts of each
    structure and ``values(out, graph)`` (eV, numpy; NaN marks a structure to skip, and
    those rows are dropped)."""
    elements = model.model_config.elements
    rows, targets = [np.zeros((0, len(elements)))], [np.zeros(0)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for graph in batches:
                out = model(graph, compute_forces=False, compute_stress=False)
                species = model.network.embedding.species_index(graph.numbers, check=False)
                counts = torch.zeros(graph.num_graphs, len(elements), dtype=torch.float64)
                counts.index_put_(
                    (graph.batch.cpu(), species.cpu()),
                    torch.ones(graph.num_nodes, dtype=torch.float64),
                    accumulate=True,
                )
                rows.append(counts.numpy())
                targets.append(np.asarray(values(out, graph), dtype=np.float64))
    finally:
        model.train(was_training)
    matrix, target = np.concatenate(rows), np.concatenate(targets)
    keep = np.isfinite(target)
    return matrix[keep], target[keep]


def _least_squares(matrix: np.ndarray, target: np.ndarray, elements) -> dict[str, float]:
    """Minimum-norm least-squares per-element fit; elements absent from ``matrix`` get 0."""
    if not len(target):
        return dict.fromkeys(elements, 0.0)
    solution, *_ = np.linalg.lstsq(matrix, target, rcond=None)
    present = matrix.sum(axis=0) > 0
    return {s: float(solution[k]) if present[k] else 0.0 for k, s in enumerate(elements)}


def coulomb_offsets(model, batches) -> dict[str, float]:
    """Least-squares per-element fit (eV) of the model's long-range energies (Coulomb plus
    induction) over ``batches``.

    Args:
        model: a :class:`hybridpot.model.HybridModel` (its current weights).
        batches: iterable of batched :class:`AtomicGraph` on the model's device.

    Returns:
        {symbol: eV}, to subtract from the reference energies; 0 for elements absent from
        ``batches`` (minimum-norm solution when compositions are linearly dependent).
    """

    def coulomb(out, graph):
        long_range = out[keys.ENERGY_COULOMB] + out[keys.ENERGY_INDUCTION]
        return long_range.detach().double().cpu().numpy()

    matrix, target = _compositions_and_values(model, batches, coulomb)
    return _least_squares(matrix, target, model.model_config.elements)


def _energy_residuals(out, graph) -> np.ndarray:
    """(B,) eV, E_label - E_model per structure; NaN where the energy is not labelled."""
    predicted = out[keys.ENERGY].detach().double().cpu().numpy().reshape(-1)
    if keys.ENERGY not in graph.labels:
        return np.full(graph.num_graphs, np.nan)
    label = graph.labels[keys.ENERGY].double().cpu().numpy().reshape(-1)
    mask = graph.labels.get(keys.ENERGY + keys.MASK_SUFFIX)
    labelled = (
        np.ones(graph.num_graphs, dtype=bool)
        if mask is None
        else mask.cpu().numpy().reshape(-1).astype(bool)
    )
    return np.where(labelled, label - predicted, np.nan)


def residual_offsets(model, train_batches, valid_batches=None) -> dict:
    """Per-element shifts (eV) that best fit the per-atom energy residuals
    (E_label - E_model) / N on ``train_batches`` (the loss's energy measure).

    Args:
        model: a :class:`hybridpot.model.HybridModel`.
        train_batches: batched graphs to fit on.
        valid_batches: batched graphs to judge the fit on, or None.

    Returns:
        ``{"shift": {symbol: eV to ADD}, "structures": int, "valid_rmse_before": meV/atom,
        "valid_rmse_after": meV/atom, "improves": bool}`` (the RMSE entries None without
        validation data; ``improves`` then says whether the training RMSE fell).
    """
    elements = model.model_config.elements
    counts, residual = _compositions_and_values(model, train_batches, _energy_residuals)
    result = {"shift": dict.fromkeys(elements, 0.0), "structures": len(residual)}
    result.update(valid_rmse_before=None, valid_rmse_after=None, improves=False)
    if not len(residual):
        return result
    atoms = counts.sum(axis=1, keepdims=True)
    shift = _least_squares(counts / atoms, residual / atoms[:, 0], elements)
    result["shift"] = shift
    vector = np.array([shift[s] for s in elements])
    if valid_batches is not None:
        counts, residual = _compositions_and_values(model, valid_batches, _energy_residuals)
    if not len(residual):
        return result
    per_atom = residual / counts.sum(axis=1)
    after = per_atom - (counts / counts.sum(axis=1, keepdims=True)) @ vector
    before_rmse = 1000.0 * float(np.sqrt(np.mean(per_atom**2)))
    after_rmse = 1000.0 * float(np.sqrt(np.mean(after**2)))
    if valid_batches is not None:
        result.update(valid_rmse_before=before_rmse, valid_rmse_after=after_rmse)
    result["improves"] = after_rmse < before_rmse
    return result


def shift_atomic_energies(model, offsets: dict[str, float], sign: float = -1.0) -> None:
    """Add ``sign`` x ``offsets`` (eV per element) to the model's reference energies: the
    energy readout's shift buffer and ``model.model_config.atomic_energies`` together."""
    config = model.model_config
    readout = model.network.energy_readout
    energies = dict(config.atomic_energies) or dict.fromkeys(config.elements, 0.0)
    with torch.no_grad():
        for k, symbol in enumerate(config.elements):
            energies[symbol] = float(energies[symbol] + sign * offsets.get(symbol, 0.0))
            readout.shift[k] = energies[symbol]
    config.atomic_energies = energies
