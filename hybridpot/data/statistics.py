"""Statistics of the training set that the model stores: reference energies and scales.

- Per-element reference energies E0_Z by least squares: E_s ≈ sum_Z n_sZ E0_Z over the
  structures with an energy label (n_sZ counts element Z in structure s). The network
  then only learns the remainder, which is small and size-independent.
- The energy scale (eV) of the network's per-atom output: the RMS of the force
  components when forces are labelled (forces are what the network's energy gradients
  must reproduce), else the spread of the per-atom residual energy.
- The average number of neighbours per atom (normalises message sums).
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from .. import keys
from .graph import AtomicGraph


def _has(graph: AtomicGraph, key: str) -> bool:
    mask = graph.labels.get(key + keys.MASK_SUFFIX)
    return key in graph.labels and (mask is None or bool(mask.all()))


def dataset_elements(graphs: list[AtomicGraph]) -> list[str]:
    """Chemical symbols present in ``graphs``, sorted by atomic number."""
    numbers = sorted({int(z) for g in graphs for z in g.numbers.unique().tolist()})
    return [chemical_symbols[z] for z in numbers]


def fit_atomic_energies(graphs: list[AtomicGraph], elements: list[str]) -> dict[str, float]:
    """Per-element reference energies (eV) by least squares over the labelled energies.

    Returns the minimum-norm solution when compositions are linearly dependent (e.g.
    only stoichiometric NaCl): then only the sum per formula unit is determined, and it
    is split evenly. Elements absent from the labelled structures get 0.

    Raises:
        ValueError: no structure has an energy label, or ``graphs`` hold an element that
            is not in ``elements``.
    """
    index = {atomic_numbers[s]: i for i, s in enumerate(elements)}
    rows, energies = [], []
    for g in graphs:
        if not _has(g, keys.ENERGY):
            continue
        counts = np.zeros(len(elements))
        for z, c in zip(*np.unique(g.numbers.numpy(), return_counts=True), strict=True):
            if int(z) not in index:
                raise ValueError(
                    f"structure holds element {chemical_symbols[int(z)]!r}, "
                    f"not in the model's elements {elements}"
                )
            counts[index[int(z)]] = c
        rows.append(counts)
        energies.append(float(g.labels[keys.ENERGY].reshape(-1)[0]))
    if not rows:
        raise ValueError("cannot fit atomic energies: no training structure has an energy label")
    solution, *_ = np.linalg.lstsq(np.array(rows), np.array(energies), rcond=None)
    present = np.array(rows).sum(axis=0) > 0
    return {s: float(solution[i]) if present[i] else 0.0 for i, s in enumerate(elements)}


def force_rms(graphs: list[AtomicGraph]) -> float | None:
    """RMS of all labelled force components (eV/Å), or None without force labels."""
    total, count = 0.0, 0
    for g in graphs:
        if _has(g, keys.FORCES):
            forces = g.labels[keys.FORCES].double()
            total += float((forces**2).sum())
            count += forces.numel()
    return (total / count) ** 0.5 if count else None


def residual_energy_std(
    graphs: list[AtomicGraph], atomic_energies: dict[str, float]
) -> float | None:
    """Standard deviation (eV/atom) of (E - sum E0) / N over labelled structures, or None."""
    values = []
    for g in graphs:
        if _has(g, keys.ENERGY):
            e0 = sum(atomic_energies.get(chemical_symbols[int(z)], 0.0) for z in g.numbers)
            energy = float(g.labels[keys.ENERGY].reshape(-1)[0])
            values.append((energy - e0) / g.num_nodes)
    return float(np.std(values)) if len(values) > 1 else None


def average_num_neighbors(graphs: list[AtomicGraph]) -> float:
    """Mean number of neighbours per atom (directed edges / atoms)."""
    edges = sum(g.num_edges for g in graphs)
    atoms = sum(g.num_nodes for g in graphs)
    if atoms == 0:
        raise ValueError("cannot count neighbours: the graphs hold no atoms")
    return edges / atoms


def dataset_statistics(
    graphs: list[AtomicGraph],
    elements: list[str],
    atomic_energies: dict[str, float] | None = None,
) -> dict:
    """The model-config entries the trainer fills in from the training set.

    Args:
        graphs: training graphs.
        elements: the model's chemical symbols.
        atomic_energies: given reference energies (eV); None: least-squares fit.

    Returns:
        ``{"atomic_energies": {symbol: eV}, "energy_scale": eV, "avg_num_neighbors": float}``.
    """
    if atomic_energies is None:
        if any(_has(g, keys.ENERGY) for g in graphs):
            atomic_energies = fit_atomic_energies(graphs, elements)
        else:
            atomic_energies = {}
    scale = force_rms(graphs)
    if not scale:
        scale = residual_energy_std(graphs, atomic_energies)
    if not scale or not np.isfinite(scale):
        scale = 1.0
    return {
        "atomic_energies": {s: float(v) for s, v in atomic_energies.items()},
        "energy_scale": float(scale),
        "avg_num_neighbors": max(float(average_num_neighbors(graphs)), 1.0),
    }
