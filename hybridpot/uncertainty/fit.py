"""Fit a model's last-layer uncertainty after training: covariances, regulariser, scale.

1. Over the training set, accumulate the Gram matrices of the LLPR features
   (:mod:`hybridpot.uncertainty.features`): per structure for the energy, per atom for the
   forces and the charges (float64).
2. On the validation set, for each regulariser s^2 of a grid (relative to the mean
   eigenvalue of the Gram matrix), compute the raw variances x^T (X^T X + s^2 I)^-1 x,
   the calibration factor alpha^2 = mean(e^2 / raw variance) that maximises the Gaussian
   likelihood of the validation errors e, and keep the (s^2, alpha^2) pair with the lowest
   negative log-likelihood. Forces: each Cartesian component of atom i counts as one
   error with atom i's variance. Charges are fitted only where the validation set has
   charge labels.
3. Store the roots of the inverse covariances and the factors as buffers of the model.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from .. import keys
from ..data.dataset import GraphLoader
from ..data.graph import AtomicGraph, batch_graphs
from ..data.segments import segment_sum
from ..train.targets import structure_mask
from .calibration import calibration_factor, gaussian_nll
from .features import charge_features, energy_features
from .llpr import UQ_PROPERTIES, inverse_root, quadratic_form

logger = logging.getLogger(__name__)

#: Regularisers s^2 tried, relative to the mean eigenvalue of each Gram matrix.
REGULARIZER_GRID = tuple(10.0**k for k in range(-9, 1))


def _model_dtype_device(model) -> tuple[torch.dtype, torch.device]:
    p = next(p for p in model.parameters() if p.is_floating_point())
    return p.dtype, p.device


@torch.no_grad()
def last_layer_features(model, graph: AtomicGraph) -> dict[str, torch.Tensor]:
    """The LLPR features of a batch, float64: ``"energy"`` (B, H) per structure,
    ``"forces"`` (N, H) per atom, ``"charges"`` (N, H_q) per atom (if the model reads
    charges) and ``"descriptor"`` (B, H), the per-atom mean of the energy features (an
    invariant fingerprint of each structure, used by the selection)."""
    network = model.network
    vectors = graph.edge_vectors(graph.positions, graph.cell)
    charge_group, group_charge = graph.charge_groups
    fragments = graph.fragment is not None
    out = network(
        graph.numbers,
        graph.edge_index,
        vectors,
        graph.batch,
        graph.num_graphs,
        group_charge,
        charge_group=charge_group if fragments else None,
        return_features=True,
    )
    features = out[keys.NODE_FEATURES]
    species = network.embedding.species_index(graph.numbers, check=False)
    phi = energy_features(network, features, species).double()
    structure = segment_sum(phi, graph.batch, graph.num_graphs)
    result = {
        "energy": structure,
        "forces": phi,
        "descriptor": structure / graph.n_atoms.to(phi.dtype)[:, None],
    }
    if network.charge_readout is not None:
        n_atoms = species.shape[0]
        groups = (charge_group, int(group_charge.shape[0])) if fragments else None
        groups = groups or (graph.batch, graph.num_graphs)
        result["charges"] = charge_features(network, features[:n_atoms], *groups).double()
    return result


def _gram_matrices(model, graphs, batch_size: int) -> dict[str, torch.Tensor]:
    """Gram matrices of the last-layer features over ``graphs`` (a list, or a packed
    dataset read on demand: batches are built one at a time, never the whole set)."""
    dtype, device = _model_dtype_device(model)
    grams: dict[str, torch.Tensor] = {}
    for start in range(0, len(graphs), batch_size):
        part = [
            graphs[i].to(dtype=dtype) for i in range(start, min(start + batch_size, len(graphs)))
        ]
        batch = batch_graphs(part).to(device)
        for name, x in last_layer_features(model, batch).items():
            if name == "descriptor":
                continue
            grams[name] = grams.get(name, 0) + x.T @ x
    return grams


def _validation_errors(model, graphs: list[AtomicGraph], batch_size: int):
    """Per property: (features (M, H) float64, errors (M, C) numpy) on labelled rows."""
    dtype, device = _model_dtype_device(model)
    loader = GraphLoader([g.to(dtype=dtype) for g in graphs], batch_size, device=device)
    rows: dict[str, list] = {name: [[], []] for name in UQ_PROPERTIES}
    for batch in loader:
        features = last_layer_features(model, batch)
        pred = model(batch, compute_forces=True, compute_stress=False)
        for name, key in (
            ("energy", keys.ENERGY),
            ("forces", keys.FORCES),
            ("charges", keys.CHARGES),
        ):
            if name not in features or key not in batch.labels:
                continue
            mask = structure_mask(batch, key)
            if name != "energy":
                mask = mask[batch.batch]
            if not bool(mask.any()):
                continue
            predicted = pred[key].detach().double()
            reference = batch.labels[key].double().reshape(predicted.shape)
            error = (predicted - reference).reshape(predicted.shape[0], -1)
            rows[name][0].append(features[name][mask])
            rows[name][1].append(error[mask].cpu().numpy())
    return {name: (torch.cat(x), np.concatenate(e)) for name, (x, e) in rows.items() if x}


def _fit_one(gram: torch.Tensor, x: torch.Tensor, errors: np.ndarray):
    """Best (root, s^2, alpha^2, nll) over :data:`REGULARIZER_GRID` for one property.

    Rows with all-zero features are left out: their prediction does not depend on the
    last layer at all (an atom without neighbours has exactly its reference energy and
    zero force, by construction), so their variance is exactly 0 and says nothing about
    the scale.
    """
    informative = (x != 0).any(dim=1).cpu().numpy()
    if not informative.any():
        raise ValueError("every validation row has zero features: nothing to calibrate on")
    x, errors = x[torch.as_tensor(informative, device=x.device)], errors[informative]
    scale = float(torch.linalg.eigvalsh(gram).clamp_min(0).mean())
    if not scale > 0:
        raise ValueError("the training features are all zero: the model cannot be calibrated")
    best = None
    for relative in REGULARIZER_GRID:
        regularizer = relative * scale
        root = inverse_root(gram, regularizer)
        raw = quadratic_form(x, root).cpu().numpy()
        sigma = np.sqrt(np.repeat(raw, errors.shape[1]))
        if not np.all(sigma > 0):
            continue
        flat = errors.reshape(-1)
        alpha = calibration_factor(flat, sigma)
        if not alpha > 0:
            continue
        nll = gaussian_nll(flat, alpha * sigma)
        if best is None or nll < best[3]:
            best = (root, regularizer, alpha**2, nll)
    if best is None:
        raise ValueError("no regulariser gave positive variances on the validation set")
    return best


def fit_uncertainty(
    model,
    train: list[AtomicGraph],
    valid: list[AtomicGraph],
    *,
    batch_size: int = 8,
):
    """Give ``model`` a calibrated last-layer uncertainty (in place; returns the model).

    Args:
        model: a trained :class:`hybridpot.model.HybridModel`.
        train: the training graphs (the Gram matrices).
        valid: labelled validation graphs (the regulariser and the calibration factors);
            they need energy and force labels; charges are calibrated when labelled.
        batch_size: structures per batch.

    Returns:
        ``model``, with ``model.uncertainty`` filled and ``config["uncertainty"]`` true; its
        outputs then include the :data:`hybridpot.keys` ``*_UNCERTAINTY`` entries.

    Raises:
        ValueError: ``train`` or ``valid`` is empty, or ``valid`` has no energy or force
            labels.
    """
    if not train:
        raise ValueError("fit_uncertainty needs training structures (train is empty)")
    if not valid:
        raise ValueError("fit_uncertainty needs validation structures (valid is empty)")
    was_training = model.training
    model.eval()
    grams = _gram_matrices(model, train, batch_size)
    validation = _validation_errors(model, valid, batch_size)
    for name in ("energy", "forces"):
        if name not in validation:
            raise ValueError(
                f"fit_uncertainty: the validation structures have no {name} labels; the "
                f"{name} uncertainty cannot be calibrated"
            )
    head = model.attach_uncertainty()
    alpha2 = torch.zeros(len(UQ_PROPERTIES), dtype=torch.float64)
    regularizers = torch.zeros(len(UQ_PROPERTIES), dtype=torch.float64)
    for k, name in enumerate(UQ_PROPERTIES):
        if name not in validation or name not in grams:
            logger.info("no %s labels in the validation set: no %s uncertainty", name, name)
            continue
        x, errors = validation[name]
        root, regularizer, a2, _ = _fit_one(grams[name], x, errors)
        getattr(head, f"{name}_root").copy_(root)
        alpha2[k], regularizers[k] = a2, regularizer
    head.alpha2.copy_(alpha2)
    head.regularizer.copy_(regularizers)
    model.train(was_training)
    return model
