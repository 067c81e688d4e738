"""Pick the most informative structures of a pool: high uncertainty, and diverse.

Greedy uncertainty-weighted farthest-point selection in an invariant descriptor space:

    d_b = min distance of structure b's descriptor to those of the excluded (already
          labelled) structures and of the structures picked so far
    pick argmax_b  u_b * d_b   among the b with d_b > tolerance   (u_b: uncertainty)

The descriptor is the per-atom mean of the model's last-layer energy features
(:func:`hybridpot.uncertainty.last_layer_features`): built from the network's even
scalars, it is invariant under rotations, reflections, translations and permutations of
the atoms, so a moved or relabelled copy of a labelled structure has distance ~0 (and the
same uncertainty) and is never picked, and K near-copies of one configuration are not
picked together. Ties go to the lower pool index: the selection is deterministic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from .. import keys
from ..data.dataset import GraphLoader
from ..data.graph import AtomicGraph
from .fit import _model_dtype_device, last_layer_features

logger = logging.getLogger(__name__)

#: What ``u_b`` is: the largest force sigma of the structure (eV/Å), or its energy sigma
#: per atom (eV/atom).
CRITERIA = ("forces", "energy")
#: Two descriptors closer than this (relative to the median descriptor norm) are copies.
DUPLICATE_TOLERANCE = 1e-3


@dataclass
class Selection:
    """What :func:`select_structures` returns.

    Attributes:
        indices: picked pool indices, in the order they were picked.
        uncertainty: (P,) u_b of every pool structure (eV/Å or eV/atom).
        distance: (K,) each pick's descriptor distance to what was labelled or picked
            before it (inf for a first pick with nothing excluded).
        duplicates: pool indices never eligible (copies of excluded structures).
    """

    indices: list[int]
    uncertainty: np.ndarray
    distance: np.ndarray
    duplicates: list[int]


def structure_uncertainty(
    model, graphs: list[AtomicGraph], criterion: str = "forces", batch_size: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(u (B,), descriptors (B, H)) of ``graphs``: u the largest force sigma per structure
    (eV/Å, ``criterion="forces"``) or the energy sigma per atom (eV/atom, ``"energy"``).

    Raises:
        ValueError: unknown ``criterion`` or a model without a fitted uncertainty.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    wanted = keys.FORCES_UNCERTAINTY if criterion == "forces" else keys.ENERGY_UNCERTAINTY
    if wanted not in getattr(model, "uncertainty_keys", lambda: [])():
        raise ValueError(
            "the model has no fitted uncertainty: train it with uncertainty: true or call "
            "hybridpot.uncertainty.fit_uncertainty"
        )
    # An ensemble's force spread needs the members' forces; the LLPR needs no derivative.
    # Descriptors come from the (first) model's network.
    members = getattr(model, "members", None)
    descriptor_model = model if members is None else members[0]
    dtype, device = _model_dtype_device(model)
    model.eval()
    loader = GraphLoader([g.to(dtype=dtype) for g in graphs], batch_size, device=device)
    scores, descriptors = [], []
    for batch in loader:
        pred = model(batch, compute_forces=members is not None, compute_stress=False)
        if criterion == "forces":
            sigma = pred[keys.FORCES_UNCERTAINTY].double().detach()
            per_structure = torch.full(
                (batch.num_graphs,), -torch.inf, dtype=sigma.dtype, device=sigma.device
            ).scatter_reduce(0, batch.batch, sigma, reduce="amax")
        else:
            per_structure = pred[keys.ENERGY_UNCERTAINTY].double() / batch.n_atoms.double()
        per_structure = per_structure.detach()
        scores.append(per_structure.cpu().numpy())
        descriptors.append(last_layer_features(descriptor_model, batch)["descriptor"].cpu().numpy())
    return np.concatenate(scores), np.concatenate(descriptors)


def _min_distances(points: np.ndarray, references: np.ndarray) -> np.ndarray:
    if references.shape[0] == 0:
        return np.full(points.shape[0], np.inf)
    out = np.empty(points.shape[0])
    for start in range(0, points.shape[0], 1024):  # bounded memory for large pools
        block = points[start : start + 1024]
        d2 = ((block[:, None, :] - references[None, :, :]) ** 2).sum(-1)
        out[start : start + 1024] = np.sqrt(d2.min(axis=1))
    return out


def greedy_selection(
    uncertainty: np.ndarray,
    descriptors: np.ndarray,
    k: int,
    excluded: np.ndarray | None = None,
    tolerance: float = DUPLICATE_TOLERANCE,
) -> Selection:
    """Uncertainty-weighted farthest-point selection (see the module docstring).

    Args:
        uncertainty: (P,) u_b >= 0 of the pool.
        descriptors: (P, H) pool descriptors.
        k: how many to pick (>= 1); fewer are returned when fewer are eligible.
        excluded: (M, H) descriptors of already labelled structures (or None).
        tolerance: relative distance under which a structure is a copy.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (the number of structures to pick) must be an integer >= 1, got {k!r}")
    u = np.asarray(uncertainty, dtype=float)
    x = np.asarray(descriptors, dtype=float)
    if x.ndim != 2 or x.shape[0] != u.shape[0]:
        raise ValueError(f"descriptors must have shape (P, H) with P = {u.shape[0]}, got {x.shape}")
    if not np.all(np.isfinite(u)) or np.any(u < 0):
        raise ValueError("uncertainty must be finite and >= 0")
    ex = np.zeros((0, x.shape[1])) if excluded is None else np.asarray(excluded, dtype=float)
    norms = np.linalg.norm(np.concatenate([x, ex]), axis=1)
    scale = float(np.median(norms)) if norms.size else 1.0
    threshold = tolerance * (scale if scale > 0 else 1.0)
    d = _min_distances(x, ex)
    duplicates = [int(i) for i in np.flatnonzero(d <= threshold)]
    picked: list[int] = []
    distances: list[float] = []
    for _ in range(int(k)):
        eligible = d > threshold
        if not eligible.any():
            break
        # Before anything is labelled or picked every d is inf: the first pick is the
        # most uncertain structure; from then on all d are finite.
        score = np.where(np.isinf(d), u, u * np.where(np.isinf(d), 1.0, d))
        score = np.where(eligible, score, -np.inf)
        best = int(np.argmax(score))  # first index among ties
        picked.append(best)
        distances.append(float(d[best]))
        d = np.minimum(d, _min_distances(x, x[best : best + 1]))
    if len(picked) < k:
        logger.warning(
            "only %d of the %d requested structures are not copies of labelled or picked ones",
            len(picked),
            k,
        )
    return Selection(picked, u, np.asarray(distances), duplicates)


def select_structures(
    model,
    pool: list[AtomicGraph],
    k: int,
    *,
    exclude: list[AtomicGraph] | None = None,
    criterion: str = "forces",
    batch_size: int = 8,
    tolerance: float = DUPLICATE_TOLERANCE,
) -> Selection:
    """The ``k`` most informative structures of ``pool`` for ``model`` (with a fitted
    uncertainty): greedy uncertainty x distance in descriptor space, never a copy of a
    structure of ``exclude`` (the labelled set) nor of an earlier pick.

    Args:
        model: a :class:`hybridpot.model.HybridModel` with a fitted uncertainty, or an
            :class:`hybridpot.uncertainty.EnsembleModel`.
        pool: candidate graphs (at least the model's cutoff).
        k: number to pick (>= 1).
        exclude: graphs already labelled (their copies are never picked).
        criterion: ``"forces"`` (largest force sigma) or ``"energy"`` (sigma per atom).
        batch_size: structures per batch.
        tolerance: relative descriptor distance under which two structures are copies.
    """
    if not pool:
        raise ValueError("pool is empty: nothing to select from")
    u, x = structure_uncertainty(model, pool, criterion, batch_size)
    excluded = None
    if exclude:
        _, excluded = structure_uncertainty(model, exclude, criterion, batch_size)
    return greedy_selection(u, x, k, excluded, tolerance)


def random_selection(n: int, k: int, seed: int) -> list[int]:
    """``k`` distinct indices of ``range(n)`` drawn with ``numpy.random.default_rng(seed)``
    (the baseline the uncertainty-driven selection is compared with)."""
    return [int(i) for i in np.random.default_rng(seed).choice(n, size=min(k, n), replace=False)]


__all__ = [
    "CRITERIA",
    "Selection",
    "greedy_selection",
    "random_selection",
    "select_structures",
    "structure_uncertainty",
]
