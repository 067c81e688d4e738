"""Evaluate a model on labelled structures and write its predictions as extended XYZ."""

from __future__ import annotations

import io
import os

import ase
import ase.io
import numpy as np
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from .. import keys
from ..data.dataset import GraphLoader, check_structures, extract_labels, graphs_from_structures
from ..data.graph import AtomicGraph
from ..derivatives import has_dipole, has_volume, voigt
from .checkpoint import atomic_write_text
from .config import DataConfig
from .metrics import Metrics
from .targets import PROPERTIES


def _model_dtype_device(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(p for p in model.parameters() if p.is_floating_point())
    return p.dtype, p.device


#: Per-atom outputs a model has only sometimes (uncertainties, induced dipoles): predicted
#: and written when present.
PER_ATOM_EXTRAS = (keys.FORCES_UNCERTAINTY, keys.CHARGES_UNCERTAINTY, keys.INDUCED_DIPOLES)


def predict(
    model: torch.nn.Module,
    graphs: list[AtomicGraph],
    *,
    batch_size: int = 8,
    metrics: Metrics | None = None,
    progress: bool = False,
    bec: bool | None = None,
) -> list[dict[str, np.ndarray]]:
    """Per-structure predictions (float64 numpy) of ``model`` for ``graphs``.

    Each dict holds energy (eV, scalar), energies (N,), forces (N, 3) eV/Å, charges
    (N,) e, energy_short, energy_coulomb, energy_field, energy_qeq and energy_induction
    (eV; the parts of energy), stress (3, 3) eV/Å³ for fully
    periodic structures, dipole (3,) e·Å for non-periodic ones, and with ``bec``
    (default: when any graph carries Born effective charge labels) born_effective_charges
    (N, 3, 3) e, induced_dipoles (N, 3) e·Å for ``induction`` models, and the model's
    uncertainties when it has them: energy_uncertainty (eV,
    scalar), forces_uncertainty (N,) eV/Å, charges_uncertainty (N,) e. When ``metrics``
    is given, each batch's errors against the graphs' labels are added to it.
    """
    dtype, device = _model_dtype_device(model)
    model.eval()
    graphs = [g.to(dtype=dtype) for g in graphs]
    stress = any(bool(has_volume(g.pbc).any()) for g in graphs)
    if bec is None:
        bec = any(keys.BORN_EFFECTIVE_CHARGES in g.labels for g in graphs)
    loader = GraphLoader(graphs, batch_size, device=device)
    results = []
    for batch in tqdm(loader, desc="evaluating", disable=not progress, leave=False):
        pred = model(batch, compute_forces=True, compute_stress=stress, compute_bec=bec)
        pred = {k: v.detach() for k, v in pred.items()}
        if metrics is not None:
            metrics.update(pred, batch)
        n_atoms = batch.n_atoms.tolist()
        starts = np.cumsum([0, *n_atoms[:-1]])
        for b, (start, n) in enumerate(zip(starts, n_atoms, strict=True)):
            atoms = slice(int(start), int(start + n))
            out = {
                keys.ENERGY: pred[keys.ENERGY][b],
                keys.ENERGIES: pred[keys.ENERGIES][atoms],
                keys.FORCES: pred[keys.FORCES][atoms],
                keys.CHARGES: pred[keys.CHARGES][atoms],
                keys.ENERGY_SHORT: pred[keys.ENERGY_SHORT][b],
                keys.ENERGY_COULOMB: pred[keys.ENERGY_COULOMB][b],
                keys.ENERGY_FIELD: pred[keys.ENERGY_FIELD][b],
                keys.ENERGY_QEQ: pred[keys.ENERGY_QEQ][b],
                keys.ENERGY_INDUCTION: pred[keys.ENERGY_INDUCTION][b],
            }
            if keys.ENERGY_UNCERTAINTY in pred:
                out[keys.ENERGY_UNCERTAINTY] = pred[keys.ENERGY_UNCERTAINTY][b]
            for key in PER_ATOM_EXTRAS:
                if key in pred:
                    out[key] = pred[key][atoms]
            if bec:
                out[keys.BORN_EFFECTIVE_CHARGES] = pred[keys.BORN_EFFECTIVE_CHARGES][atoms]
            if bool(has_volume(batch.pbc[b])):
                out[keys.STRESS] = pred[keys.STRESS][b]
            elif bool(has_dipole(batch.pbc[b])):
                out[keys.DIPOLE] = pred[keys.DIPOLE][b]
            results.append({k: v.double().cpu().numpy() for k, v in out.items()})
    return results


def check_elements(images: list[ase.Atoms], elements: list[str], source: str) -> None:
    """Raise ValueError naming the first structure (``source[index]``) with an element
    that is not in ``elements`` (the model's)."""
    known = set(elements)
    for index, atoms in enumerate(images):
        unknown = sorted(set(atoms.get_chemical_symbols()) - known)
        if unknown:
            raise ValueError(
                f"{source}[{index}]: elements {unknown} are not among the model's {elements}"
            )


def evaluate_structures(
    model: torch.nn.Module,
    images: list[ase.Atoms],
    data_keys: DataConfig | None = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
    source: str = "structures",
    bec: bool | None = None,
) -> tuple[dict[str, float], dict[str, int], list[dict[str, np.ndarray]]]:
    """Predict ``images`` and compare with their labels (``bec``: predict Born effective
    charges; default: when the structures carry BEC labels).

    Returns:
        ``(metrics, counts, predictions)``: MAE/RMSE per labelled property in reporting
        units (:data:`hybridpot.train.metrics.UNITS`), the number of compared values per
        property, and the per-structure predictions of :func:`predict`.
    """
    graphs = graphs_from_structures(
        images, float(model.cutoff), data_keys, source=source, progress=progress
    )
    check_elements(images, model.config["elements"], source)
    electrostatics = getattr(model, "electrostatics", None)
    check_structures(graphs, None if electrostatics is None else electrostatics.route, source)
    metrics = Metrics()
    predictions = predict(
        model, graphs, batch_size=batch_size, metrics=metrics, progress=progress, bec=bec
    )
    counts = {p: metrics.count[p] for p in PROPERTIES if metrics.count[p]}
    return metrics.compute(), counts, predictions


def write_predictions(
    images: list[ase.Atoms],
    predictions: list[dict[str, np.ndarray]],
    path: str | os.PathLike,
    data_keys: DataConfig | None = None,
) -> None:
    """Write ``images`` with predicted labels to extended XYZ ``path``, atomically.

    Predictions go under the standard names (energy, forces, stress, charges, read back
    by ASE as calculator results; ``energy_short``, ``energy_coulomb`` (and
    ``energy_field``, ``energy_qeq``, ``energy_induction`` where not 0) and, for
    non-periodic structures, ``dipole`` in ``info``; Born effective charges, when
    predicted, as the calculator result ``born_effective_charges`` (N, 9) row-major;
    induced dipoles (N, 3) e·Å and uncertainties as ``arrays`` / ``info`` entries named by
    :mod:`hybridpot.keys`);
    reference labels found under the ``data_keys`` are kept as ``ref_<name>``.
    """
    if len(images) != len(predictions):
        raise ValueError(
            f"images and predictions must have equal length, got {len(images)} and "
            f"{len(predictions)}"
        )
    k = data_keys or DataConfig()
    label_keys = {
        keys.ENERGY: k.energy_key,
        keys.FORCES: k.forces_key,
        keys.STRESS: k.stress_key,
        keys.CHARGES: k.charges_key,
        keys.DIPOLE: k.dipole_key,
        keys.BORN_EFFECTIVE_CHARGES: k.bec_key,
    }
    out = []
    for atoms, pred in zip(images, predictions, strict=True):
        labels, _ = extract_labels(atoms, k)
        new = atoms.copy()  # info and arrays are copied, the calculator is not
        for name, key in label_keys.items():
            new.info.pop(key, None)
            if key in new.arrays and key not in ("numbers", "positions"):
                del new.arrays[key]
            if name not in labels:
                continue
            if name in (keys.FORCES, keys.CHARGES):
                new.arrays[f"ref_{name}"] = labels[name]
            elif name == keys.BORN_EFFECTIVE_CHARGES:
                new.arrays[f"ref_{name}"] = labels[name].reshape(-1, 9)
            elif name == keys.STRESS:
                new.info[f"ref_{name}"] = voigt(labels[name].reshape(3, 3))
            elif name == keys.DIPOLE:
                new.info[f"ref_{name}"] = labels[name].reshape(3)
            else:
                new.info[f"ref_{name}"] = float(labels[name].reshape(-1)[0])
        results = {
            "energy": float(pred[keys.ENERGY]),
            "forces": pred[keys.FORCES],
            "charges": pred[keys.CHARGES],
        }
        if keys.STRESS in pred:
            results["stress"] = voigt(pred[keys.STRESS])
        if keys.ENERGY_UNCERTAINTY in pred:
            new.info[keys.ENERGY_UNCERTAINTY] = float(pred[keys.ENERGY_UNCERTAINTY])
        for key in PER_ATOM_EXTRAS:
            if key in pred:
                new.arrays[key] = pred[key]
        new.info[keys.ENERGY_SHORT] = float(pred[keys.ENERGY_SHORT])
        new.info[keys.ENERGY_COULOMB] = float(pred[keys.ENERGY_COULOMB])
        # The other parts of the energy, where the model has them (a molecule in a
        # field, charge equilibration, induction).
        for key in (keys.ENERGY_FIELD, keys.ENERGY_QEQ, keys.ENERGY_INDUCTION):
            if float(pred.get(key, 0.0)) != 0.0:
                new.info[key] = float(pred[key])
        if keys.DIPOLE in pred:
            new.info[keys.DIPOLE] = pred[keys.DIPOLE]
        if keys.BORN_EFFECTIVE_CHARGES in pred:
            # ASE's own property, (N, 9) row-major (extxyz cannot write (N, 3, 3)),
            # Z_i[a, b] = dM_a/dr_ib.
            results["born_effective_charges"] = pred[keys.BORN_EFFECTIVE_CHARGES].reshape(-1, 9)
        new.calc = SinglePointCalculator(new, **results)
        out.append(new)
    buffer = io.StringIO()
    ase.io.write(buffer, out, format="extxyz")
    atomic_write_text(path, buffer.getvalue())


def uncertainty_errors(
    images: list[ase.Atoms],
    predictions: list[dict[str, np.ndarray]],
    data_keys: DataConfig | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Signed errors and predicted standard deviations, per property with both.

    Returns:
        property -> (errors (M,), sigmas (M,)): ``"energy"`` one value per labelled
        structure (eV, total energy), ``"forces"`` one per force component (eV/Å, each
        atom's sigma for its three components), ``"charges"`` one per atom (e). Values
        whose sigma is exactly 0 are left out: they do not depend on the fitted last layer
        (an atom without neighbours has exactly its reference energy and zero force).
    """
    pairs = {
        "energy": (keys.ENERGY, keys.ENERGY_UNCERTAINTY),
        "forces": (keys.FORCES, keys.FORCES_UNCERTAINTY),
        "charges": (keys.CHARGES, keys.CHARGES_UNCERTAINTY),
    }
    rows: dict[str, tuple[list, list]] = {name: ([], []) for name in pairs}
    for atoms, pred in zip(images, predictions, strict=True):
        labels, _ = extract_labels(atoms, data_keys)
        for name, (key, sigma_key) in pairs.items():
            if key not in labels or sigma_key not in pred:
                continue
            error = np.asarray(pred[key]).reshape(labels[key].shape) - labels[key]
            sigma = np.asarray(pred[sigma_key])
            if name == "forces":
                sigma = np.repeat(sigma[:, None], 3, axis=1)
            sigma = np.broadcast_to(sigma, error.shape).ravel()
            rows[name][0].append(error.ravel()[sigma > 0])
            rows[name][1].append(sigma[sigma > 0])
    return {
        name: (np.concatenate(errors), np.concatenate(sigmas))
        for name, (errors, sigmas) in rows.items()
        if errors
    }
