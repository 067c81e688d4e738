"""Pair model predictions with reference labels, keeping only what is labelled.

The loss and the metrics both compare a prediction with a label per property. This module
is the one place that knows each property's shape, how it is normalised and where it is
labelled (the ``<key>_mask`` of :func:`hybridpot.data.batch_graphs`).

| property | compared values | rows |
|---|---|---|
| energy | energy per atom, E / N (eV/atom) | labelled structures |
| forces | 3 components (eV/Å) | atoms of labelled structures |
| stress | 6 Voigt components (eV/Å³, ASE sign) | labelled structures |
| charges | per-atom charge (e) | atoms of labelled structures |
| dipole | 3 components (e·Å) | labelled non-periodic structures |
| bec | 9 components of Z*_i (e) | atoms of labelled structures |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import keys
from ..data.graph import AtomicGraph
from ..derivatives import has_dipole, voigt

#: Properties the loss and the metrics know, in reporting order.
PROPERTIES = ("energy", "forces", "stress", "charges", "dipole", "bec")

#: Model output each property needs.
OUTPUT_KEYS = {
    "energy": keys.ENERGY,
    "forces": keys.FORCES,
    "stress": keys.STRESS,
    "charges": keys.CHARGES,
    "dipole": keys.DIPOLE,
    "bec": keys.BORN_EFFECTIVE_CHARGES,
}

#: Per-atom properties and the shape of their compared rows.
_PER_ATOM = {"forces": (-1, 3), "charges": (-1, 1), "bec": (-1, 9)}


@dataclass
class Pair:
    """Predicted and reference values of one property over its labelled rows.

    Attributes:
        pred: (M, C) prediction, differentiable.
        ref: (M, C) reference.
        weight: (M,) per-row weight (the structure's loss weight).
    """

    pred: torch.Tensor
    ref: torch.Tensor
    weight: torch.Tensor


def structure_mask(graph: AtomicGraph, key: str) -> torch.Tensor:
    """(B,) bool: which structures of ``graph`` carry label ``key``."""
    if key not in graph.labels:
        return torch.zeros(graph.num_graphs, dtype=torch.bool, device=graph.device)
    mask = graph.labels.get(key + keys.MASK_SUFFIX)
    if mask is None:
        return torch.ones(graph.num_graphs, dtype=torch.bool, device=graph.device)
    return mask.to(graph.device)


def labelled_structures(graph: AtomicGraph, name: str) -> torch.Tensor:
    """(B,) bool: which structures of ``graph`` are compared on property ``name``.

    Raises:
        ValueError: ``name`` is not one of :data:`PROPERTIES`.
    """
    if name not in OUTPUT_KEYS:
        raise ValueError(f"property must be one of {PROPERTIES}, got {name!r}")
    mask = structure_mask(graph, OUTPUT_KEYS[name])
    if name == "dipole":
        mask = mask & has_dipole(graph.pbc)
    return mask


def pair(pred: dict[str, torch.Tensor], graph: AtomicGraph, name: str) -> Pair | None:
    """The labelled rows of property ``name`` (see the table above), or None if none.

    Raises:
        ValueError: ``name`` is unknown, or the property is labelled but the model did
            not predict it (e.g. stress requested without ``compute_stress``).
    """
    mask = labelled_structures(graph, name)  # raises for an unknown name
    key = OUTPUT_KEYS[name]
    if not bool(mask.any()):
        return None
    if key not in pred:
        raise ValueError(
            f"the batch has {name} labels but the model output has no {key!r} "
            f"(available: {sorted(pred)})"
        )
    weights = graph.labels.get(keys.WEIGHT)
    if weights is None:
        weights = torch.ones(graph.num_graphs, dtype=graph.dtype, device=graph.device)
    weights = weights.to(pred[key].dtype)
    ref = graph.labels[key].to(pred[key].dtype)
    p = pred[key]
    if name == "energy":
        # Energy per atom: errors of structures of different size become comparable.
        n_atoms = graph.n_atoms.to(p.dtype)
        p, ref = (p / n_atoms)[:, None], (ref.reshape(-1) / n_atoms)[:, None]
    elif name == "stress":
        p, ref = voigt(p), voigt(ref.reshape(-1, 3, 3))
    elif name in _PER_ATOM:
        atom_mask = mask[graph.batch]
        shape = _PER_ATOM[name]
        p = p.reshape(shape)[atom_mask]
        ref = ref.reshape(shape)[atom_mask]
        return Pair(p, ref, weights[graph.batch][atom_mask])
    else:
        p, ref = p.reshape(-1, 3), ref.reshape(-1, 3)
    return Pair(p[mask], ref[mask], weights[mask])
