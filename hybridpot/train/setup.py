"""From a training config to data splits and a complete model config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_numbers

from .. import hyperparameters as hp
from ..data.dataset import file_hash, load_graphs, random_split, read_structures
from ..data.graph import AtomicGraph
from ..data.packed import PackedDataset, is_packed
from ..data.statistics import dataset_elements, dataset_statistics, largest_net_charge
from ..derivatives import has_dipole
from .config import TrainConfig
from .schema import ConfigError
from .targets import PROPERTIES, labelled_structures

logger = logging.getLogger(__name__)

#: The DataConfig key that names each property's label.
LABEL_KEYS = {
    "energy": "energy_key",
    "forces": "forces_key",
    "stress": "stress_key",
    "charges": "charges_key",
    "dipole": "dipole_key",
    "bec": "bec_key",
}

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class PreparedData:
    """Training, validation and test graphs, with where they came from.

    Attributes:
        train, valid, test: labelled graphs (valid/test may be empty).
        provenance: file paths, SHA-256 hashes, split seed and sizes (JSON-serialisable).
    """

    train: list[AtomicGraph] | PackedDataset
    valid: list[AtomicGraph] | PackedDataset
    test: list[AtomicGraph] | PackedDataset
    provenance: dict = field(default_factory=dict)

    @property
    def all_graphs(self) -> list[AtomicGraph] | PackedDataset:
        parts = [p for p in (self.train, self.valid, self.test) if len(p)]
        if all(isinstance(p, list) for p in parts):
            return [g for p in parts for g in p]
        if all(isinstance(p, PackedDataset) for p in parts) and len({p.path for p in parts}) == 1:
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            return total
        return self.train  # files of different kinds: the training set decides

    def elements(self) -> list[str]:
        """Chemical symbols present in any split, sorted by atomic number."""
        found: set[str] = set()
        for part in (self.train, self.valid, self.test):
            if len(part):
                found.update(dataset_elements(part))
        return sorted(found, key=lambda s: atomic_numbers[s])


def prepare_data(
    config: TrainConfig, *, progress: bool = False, model: dict | None = None
) -> PreparedData:
    """Read the data files of ``config`` (neighbour lists at ``model.cutoff``) and split.

    A validation (test) file, when given, is used as it is; otherwise ``val_fraction``
    (``test_fraction``) of the training file is held out by a random split seeded with
    ``data.split_seed`` (default: ``seed``). A packed file (``hybridpot pack``) is not
    read here: its splits are views that build graphs on demand.

    Args:
        config: the training config.
        progress: show progress bars.
        model: the model section to use (cutoff, electrostatics) instead of
            ``config.model`` (a fine-tuned run takes the source model's).
    """
    d = config.data
    model = config.model if model is None else model
    cutoff = float(model["cutoff"])
    dtype = DTYPES[config.dtype]
    route = _route(model)

    def load(path: str) -> list[AtomicGraph] | PackedDataset:
        if is_packed(path):
            return PackedDataset(path, cutoff, dtype=dtype, route=route)
        return load_graphs(
            path, cutoff, d, dtype=dtype, cache_dir=d.cache_dir, progress=progress, route=route
        )

    def take(data, indices):
        return (
            data.subset(indices) if isinstance(data, PackedDataset) else [data[i] for i in indices]
        )

    pool = load(d.train)
    fractions = (
        d.val_fraction if d.valid is None else 0.0,
        d.test_fraction if d.test is None else 0.0,
    )
    split_seed = config.seed if d.split_seed is None else d.split_seed
    try:
        train_idx, val_idx, test_idx = random_split(len(pool), fractions, split_seed)
    except ValueError as error:
        raise ValueError(f"data.train {d.train!r}: {error}") from None
    valid = load(d.valid) if d.valid is not None else take(pool, val_idx)
    test = load(d.test) if d.test is not None else take(pool, test_idx)
    train = take(pool, train_idx)
    provenance = {
        "train_file": str(Path(d.train).resolve()),
        "train_sha256": file_hash(d.train),
        "valid_file": None if d.valid is None else str(Path(d.valid).resolve()),
        "test_file": None if d.test is None else str(Path(d.test).resolve()),
        "split_seed": split_seed,
        "n_train": len(train),
        "n_valid": len(valid),
        "n_test": len(test),
    }
    data = PreparedData(train, valid, test, provenance)
    check_labels(config, data)
    return data


def _route(model: dict):
    """The electrostatics' routing rule for the model section (None: no Coulomb term)."""
    if not model.get("coulomb", True):
        return None
    from ..electrostatics import Electrostatics

    return Electrostatics(method=model.get("coulomb_method", "auto")).route


def label_counts(graphs: list[AtomicGraph]) -> dict[str, int]:
    """Property -> number of structures in ``graphs`` compared on it (labelled; for the
    dipole, labelled and non-periodic)."""
    if isinstance(graphs, PackedDataset):
        counts = {p: int(graphs.label_mask(p).sum()) for p in PROPERTIES}
        if counts["dipole"]:
            pbc = torch.from_numpy(np.asarray(graphs.array("pbc")[graphs.indices]))
            counts["dipole"] = int((graphs.label_mask("dipole") & has_dipole(pbc).numpy()).sum())
        return counts
    return {p: sum(int(labelled_structures(g, p).sum()) for g in graphs) for p in PROPERTIES}


def available_keys(path: str, format: str | None = None) -> str:
    """The ``info``, ``arrays`` and calculator keys of the structures in ``path``, as text."""
    if is_packed(path):
        return f"packed labels {PackedDataset(path, 1.0).labels}"
    info, arrays, results = set(), set(), set()
    for atoms in read_structures(path, format):
        info.update(atoms.info)
        arrays.update(k for k in atoms.arrays if k not in ("numbers", "positions"))
        calc = atoms.calc
        results.update(getattr(calc, "results", None) or {})
    parts = [
        f"{where} keys {sorted(keys)}"
        for where, keys in (("info", info), ("arrays", arrays), ("calculator", results))
        if keys
    ]
    return "; ".join(parts) if parts else "no keys besides numbers and positions"


def check_labels(config: TrainConfig, data: PreparedData) -> None:
    """Stop a run whose loss would train on nothing; report partial labelling.

    A property with a positive loss weight that no training structure carries is an
    error (its loss would silently be zero), listing the keys the training file has. A
    property that only some structures carry is logged as a warning with the counts.

    Raises:
        ConfigError: naming the loss weight, the label key and the keys the file has.
    """
    counts = label_counts(data.train)
    total = len(data.train)
    for name in PROPERTIES:
        weight = getattr(config.loss, name)
        if not weight > 0:
            continue
        key_name = LABEL_KEYS[name]
        key = getattr(config.data, key_name)
        if counts[name] == 0:
            what = "non-periodic structure" if name == "dipole" else "structure"
            raise ConfigError(
                f"loss.{name} is {weight:g} but no training {what} has a {name} label "
                f"(key {key!r}, data.{key_name}); data.train {config.data.train!r} has "
                f"{available_keys(config.data.train, config.data.format)}. Set "
                f"data.{key_name} to the key that holds it, or loss.{name}=0"
            )
        if counts[name] < total:
            logger.warning(
                "%s labels (data.%s: %r) in %d of %d training structures; the other %d add "
                "no %s loss",
                name,
                key_name,
                key,
                counts[name],
                total,
                total - counts[name],
                name,
            )


def complete_model_config(config: TrainConfig, data: PreparedData) -> dict:
    """``config.model`` with elements and the training-set statistics filled in.

    ``elements`` default to those present in any split (sorted by atomic number); given
    ``atomic_energies``, ``energy_scale`` or ``avg_num_neighbors`` are kept;
    ``induction: "auto"`` is resolved from the training data (:func:`induction_from_data`).

    Raises:
        ValueError: the data hold an element missing from ``model.elements``.
    """
    model = dict(config.model)
    present = data.elements()
    elements = model.get("elements")
    if elements is None:
        model["elements"] = elements = present
    elif not isinstance(elements, list) or not all(s in atomic_numbers for s in elements):
        raise ValueError(f"model.elements must be a list of chemical symbols, got {elements!r}")
    missing = [s for s in present if s not in elements]
    if missing:
        raise ValueError(
            f"the data hold elements {missing} that model.elements {elements} does not list"
        )
    stats = dataset_statistics(
        data.train,
        elements,
        model.get("atomic_energies"),
        neighbor_samples=(
            config.data.statistics_samples if isinstance(data.train, PackedDataset) else None
        ),
    )
    for key, value in stats.items():
        model.setdefault(key, value)
    if model.get("induction", hp.INDUCTION) == "auto":
        model["induction"] = induction_from_data(model, data.train)
    return model


def induction_from_data(model: dict, train) -> bool:
    """``induction: "auto"`` resolved for ``model`` (a model-config dict) and the
    training graphs ``train``: true for latent charges with a Coulomb term when a
    training structure or fragment carries a net charge of at least
    ``hyperparameters.NET_CHARGE_THRESHOLD`` e (an ion, whose field polarises matter
    beyond the cutoff), false otherwise. Logged, and stored resolved in the model file."""
    latent = model.get("coulomb", hp.COULOMB) and (
        model.get("charge_model", hp.CHARGE_MODEL) == "latent"
    )
    largest = largest_net_charge(train) if latent else 0.0
    chosen = bool(latent and largest >= hp.NET_CHARGE_THRESHOLD)
    logger.info(
        "induction 'auto' -> %s (%s)",
        str(chosen).lower(),
        f"largest net charge of a training structure or fragment {largest:.3g} e, "
        f"threshold {hp.NET_CHARGE_THRESHOLD:g} e"
        if latent
        else "no latent charges with a Coulomb term",
    )
    return chosen
