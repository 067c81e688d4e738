"""Per-element energy offsets that account for the Coulomb energy of the initial charges.

The trainer fits the reference energies E0_Z by least squares on the labelled energies
(:func:`hybridpot.data.statistics.fit_atomic_energies`). A hybrid model adds the Coulomb
energy of its charges on top, which is not zero before training and, being extensive,
projects onto the compositions: left alone, the network would first have to unlearn it.
This module refits the offsets on E - E_coulomb(initial charges), which by linearity of
least squares is the plain fit minus the fit of the Coulomb energies alone.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import keys


def coulomb_offsets(model, batches) -> dict[str, float]:
    """Least-squares per-element fit (eV) of the model's Coulomb energies over ``batches``.

    Args:
        model: a :class:`hybridpot.model.HybridModel` (its current weights).
        batches: iterable of batched :class:`AtomicGraph` on the model's device.

    Returns:
        {symbol: eV}, to subtract from the reference energies; 0 for elements absent from
        ``batches`` (minimum-norm solution when compositions are linearly dependent).
    """
    elements = model.model_config.elements
    rows, targets = [], []
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
                targets.append(out[keys.ENERGY_COULOMB].detach().double().cpu().numpy())
    finally:
        model.train(was_training)
    if not rows:
        return dict.fromkeys(elements, 0.0)
    matrix, coulomb = np.concatenate(rows), np.concatenate(targets)
    solution, *_ = np.linalg.lstsq(matrix, coulomb, rcond=None)
    present = matrix.sum(axis=0) > 0
    return {s: float(solution[k]) if present[k] else 0.0 for k, s in enumerate(elements)}


def shift_atomic_energies(model, offsets: dict[str, float]) -> None:
    """Subtract ``offsets`` (eV per element) from the model's reference energies: the
    energy readout's shift buffer and ``model.model_config.atomic_energies`` together."""
    config = model.model_config
    readout = model.network.energy_readout
    energies = dict(config.atomic_energies) or dict.fromkeys(config.elements, 0.0)
    with torch.no_grad():
        for k, symbol in enumerate(config.elements):
            energies[symbol] = float(energies[symbol] - offsets.get(symbol, 0.0))
            readout.shift[k] = energies[symbol]
    config.atomic_energies = energies
