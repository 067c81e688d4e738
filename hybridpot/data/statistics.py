"""Statistics of the training set that the model stores: reference energies and scales.

- Per-element reference energies E0_Z by least squares: E_s ≈ sum_Z n_sZ E0_Z over the
  structures with an energy label (n_sZ counts element Z in structure s). The network
  then only learns the remainder, which is small and size-independent.
- The energy scale (eV) of the network's per-atom output: the RMS of the force
  components when forces are labelled (forces are what the network's energy gradients
  must reproduce), else the spread of the per-atom residual energy.
- The average number of neighbours per atom (normalises message sums).

``graphs`` is a list of graphs or a :class:`hybridpot.data.packed.PackedDataset` (read
from its arrays, not graph by graph; the neighbour count then uses a sample).
"""

from __future__ import annotations

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from .. import keys
from .graph import AtomicGraph


def has_label(graph: AtomicGraph, key: str) -> bool:
    """Whether ``graph`` carries the label ``key`` for every structure it holds."""
    mask = graph.labels.get(key + keys.MASK_SUFFIX)
    return key in graph.labels and (mask is None or bool(mask.all()))


def dataset_elements(graphs: list[AtomicGraph]) -> list[str]:
    """Chemical symbols present in ``graphs``, sorted by atomic number."""
    if hasattr(graphs, "elements"):
        return graphs.elements()
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
    counts, energies, labelled = compositions_and_energies(graphs, elements)
    if not labelled.any():
        raise ValueError("cannot fit atomic energies: no training structure has an energy label")
    rows = counts[labelled]
    solution, *_ = np.linalg.lstsq(rows, energies[labelled], rcond=None)
    present = rows.sum(axis=0) > 0
    return {s: float(solution[i]) if present[i] else 0.0 for i, s in enumerate(elements)}


def compositions_and_energies(
    graphs: list[AtomicGraph], elements: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(counts, energies, labelled)``: (B, S) atoms of each element per structure,
    (B,) energy labels in eV (0 where absent) and (B,) bool which structures have one.

    Raises:
        ValueError: a structure holds an element that is not in ``elements``.
    """
    if hasattr(graphs, "compositions_and_energies"):
        return graphs.compositions_and_energies(elements)
    index = {atomic_numbers[s]: i for i, s in enumerate(elements)}
    counts = np.zeros((len(graphs), len(elements)))
    energies = np.zeros(len(graphs))
    labelled = np.zeros(len(graphs), dtype=bool)
    for row, g in enumerate(graphs):
        for z, c in zip(*np.unique(g.numbers.numpy(), return_counts=True), strict=True):
            if int(z) not in index:
                raise ValueError(
                    f"structure holds element {chemical_symbols[int(z)]!r}, "
                    f"not in the model's elements {elements}"
                )
            counts[row, index[int(z)]] = c
        if has_label(g, keys.ENERGY):
            labelled[row] = True
            energies[row] = float(g.labels[keys.ENERGY].reshape(-1)[0])
    return counts, energies, labelled


def force_rms(graphs: list[AtomicGraph]) -> float | None:
    """RMS of all labelled force components (eV/Å), or None without force labels."""
    if hasattr(graphs, "force_sums"):
        total, count = graphs.force_sums()
        return (total / count) ** 0.5 if count else None
    total, count = 0.0, 0
    for g in graphs:
        if has_label(g, keys.FORCES):
            forces = g.labels[keys.FORCES].double()
            total += float((forces**2).sum())
            count += forces.numel()
    return (total / count) ** 0.5 if count else None


def residual_energy_std(
    graphs: list[AtomicGraph], atomic_energies: dict[str, float]
) -> float | None:
    """Standard deviation (eV/atom) of (E - sum E0) / N over labelled structures, or None."""
    if hasattr(graphs, "compositions_and_energies"):
        symbols = sorted(atomic_energies) or graphs.elements()
        counts, energies, labelled = graphs.compositions_and_energies(symbols)
        e0 = counts @ np.array([atomic_energies.get(s, 0.0) for s in symbols])
        values = ((energies - e0) / counts.sum(axis=1))[labelled]
        return float(np.std(values)) if len(values) > 1 else None
    values = []
    for g in graphs:
        if has_label(g, keys.ENERGY):
            e0 = sum(atomic_energies.get(chemical_symbols[int(z)], 0.0) for z in g.numbers)
            energy = float(g.labels[keys.ENERGY].reshape(-1)[0])
            values.append((energy - e0) / g.num_nodes)
    return float(np.std(values)) if len(values) > 1 else None


def largest_net_charge(graphs: list[AtomicGraph]) -> float:
    """The largest |total charge| of a structure or |charge| of a fragment in ``graphs``
    (e; 0.0 for no graphs)."""
    if hasattr(graphs, "array"):  # a packed view: read the arrays, not the structures
        charges = np.asarray(graphs.array("total_charge")[graphs.indices], dtype=np.float64)
        largest = float(np.abs(charges).max()) if charges.size else 0.0
        if graphs.has("fragment_start"):
            start = graphs.array("fragment_start")
            fragment_charges = graphs.array("fragment_charges")
            for index in graphs.indices:
                rows = fragment_charges[start[index] : start[index + 1]]
                if rows.size:
                    largest = max(largest, float(np.abs(rows).max()))
        return largest
    largest = 0.0
    for g in graphs:
        largest = max(largest, float(g.total_charge.abs().max()))
        if g.fragment_charge is not None and g.fragment_charge.numel():
            largest = max(largest, float(g.fragment_charge.abs().max()))
    return largest


def average_num_neighbors(graphs: list[AtomicGraph], max_samples: int | None = None) -> float:
    """Mean number of neighbours per atom (directed edges / atoms), over at most
    ``max_samples`` structures evenly spaced through ``graphs`` (None: all)."""
    if max_samples is not None and len(graphs) > max_samples:
        graphs = [graphs[int(i)] for i in np.linspace(0, len(graphs) - 1, max_samples)]
    edges = sum(g.num_edges for g in graphs)
    atoms = sum(g.num_nodes for g in graphs)
    if atoms == 0:
        raise ValueError("cannot count neighbours: the graphs hold no atoms")
    return edges / atoms


def dataset_statistics(
    graphs: list[AtomicGraph],
    elements: list[str],
    atomic_energies: dict[str, float] | None = None,
    *,
    neighbor_samples: int | None = None,
) -> dict:
    """The model-config entries the trainer fills in from the training set.

    Args:
        graphs: training graphs.
        elements: the model's chemical symbols.
        atomic_energies: given reference energies (eV); None: least-squares fit.
        neighbor_samples: count neighbours on at most this many structures (None: all).

    Returns:
        ``{"atomic_energies": {symbol: eV}, "energy_scale": eV, "avg_num_neighbors": float}``.
    """
    if atomic_energies is None:
        if compositions_and_energies(graphs, elements)[2].any():
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
        "avg_num_neighbors": max(float(average_num_neighbors(graphs, neighbor_samples)), 1.0),
    }
