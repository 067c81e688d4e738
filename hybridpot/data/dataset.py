"""Reference structures as labelled atomic graphs: reading, caching, splitting, batching.

Labels are looked up by configurable keys (:class:`~hybridpot.train.config.DataConfig`),
first in ``atoms.info`` / ``atoms.arrays`` and then in the results of an attached
calculator (ASE's extxyz reader moves ``energy``, ``forces``, ``stress``, ``charges`` and
``dipole`` there). A key that is absent means "no label" for that structure (the batch
carries a mask), never zero. Neighbour lists are computed once per structure and kept in
memory; optionally they are also cached on disk, keyed by the file's hash and the cutoff.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import ase
import ase.io
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import keys
from ..derivatives import voigt_to_matrix
from ..fileio import atomic_save, load_weights_only, require_file

# Only the label keys and their defaults (a light module: no torch, no trainer).
from ..train.config import DataConfig
from .fragments import fragments_from_atoms
from .graph import AtomicGraph, batch_graphs, check_electric_field, graph_from_atoms

logger = logging.getLogger(__name__)

#: Labels a dataset graph may carry (besides keys.WEIGHT, which every graph from this
#: module has), with their per-structure shapes.
LABELS = (
    keys.ENERGY,
    keys.FORCES,
    keys.STRESS,
    keys.CHARGES,
    keys.DIPOLE,
    keys.BORN_EFFECTIVE_CHARGES,
)

_CACHE_VERSION = 2

#: Å; atoms closer than this are the same place (a broken structure, never data).
COINCIDENT = 1e-6


def _lookup(atoms: ase.Atoms, key: str) -> np.ndarray | None:
    """The value stored under ``key`` in info, arrays or the calculator's results, or None."""
    if key in atoms.info:
        return np.asarray(atoms.info[key], dtype=np.float64)
    if key in atoms.arrays:
        return np.asarray(atoms.arrays[key], dtype=np.float64)
    calc = atoms.calc
    results = getattr(calc, "results", None) if calc is not None else None
    if results and key in results:
        return np.asarray(results[key], dtype=np.float64)
    return None


def extract_labels(
    atoms: ase.Atoms, data_keys: DataConfig | None = None, *, where: str = "structure"
) -> tuple[dict[str, np.ndarray], float]:
    """Reference labels of one structure and its total charge.

    Args:
        atoms: the structure.
        data_keys: which keys hold which label (defaults of :class:`DataConfig`).
        where: how to name the structure in error messages (e.g. ``"data.xyz[3]"``).

    Returns:
        ``(labels, total_charge)``: labels keyed by :mod:`hybridpot.keys` names with shapes
        energy (1,) eV, forces (N, 3) eV/Å, stress (1, 3, 3) eV/Å³, charges (N,) e,
        dipole (1, 3) e·Å, Born effective charges (N, 3, 3) e, and ``weight`` (1,)
        always; absent labels are left out.

    Raises:
        ValueError: a label of the wrong shape, a non-finite label or a negative weight.
    """
    k = data_keys or DataConfig()
    n = len(atoms)
    labels: dict[str, np.ndarray] = {}
    spec = (
        (keys.ENERGY, k.energy_key, ((), (1,)), (1,)),
        (keys.FORCES, k.forces_key, ((n, 3),), (n, 3)),
        (keys.STRESS, k.stress_key, ((6,), (3, 3), (1, 6), (1, 3, 3)), (1, 3, 3)),
        (keys.CHARGES, k.charges_key, ((n,), (n, 1)), (n,)),
        (keys.DIPOLE, k.dipole_key, ((3,), (1, 3)), (1, 3)),
        (keys.BORN_EFFECTIVE_CHARGES, k.bec_key, ((n, 9), (n, 3, 3)), (n, 3, 3)),
    )
    for name, key, shapes, target in spec:
        value = _lookup(atoms, key)
        if value is None:
            continue
        if value.shape not in shapes:
            raise ValueError(
                f"{where}: label {name!r} (key {key!r}) must have shape "
                f"{' or '.join(str(s) for s in shapes)}, got {value.shape}"
            )
        if not np.isfinite(value).all():
            raise ValueError(f"{where}: label {name!r} (key {key!r}) has NaN or inf values")
        if name == keys.STRESS and value.size == 6:
            value = voigt_to_matrix(value.reshape(6))  # ASE's Voigt order -> symmetric 3x3
        labels[name] = value.reshape(target)
    weight = _lookup(atoms, k.weight_key)
    weight = np.ones(1) if weight is None else weight.reshape(-1)
    if weight.shape != (1,) or not np.isfinite(weight).all() or weight[0] < 0:
        raise ValueError(
            f"{where}: weight (key {k.weight_key!r}) must be one finite number >= 0, "
            f"got {weight.tolist()}"
        )
    labels[keys.WEIGHT] = weight
    charge = atoms.info.get(k.total_charge_key, 0.0)
    try:
        total_charge = float(charge)
    except (TypeError, ValueError):
        total_charge = float("nan")
    if not np.isfinite(total_charge):
        raise ValueError(
            f"{where}: total charge (key {k.total_charge_key!r}) must be a finite number, "
            f"got {charge!r}"
        )
    return labels, total_charge


def extract_conditions(
    atoms: ase.Atoms,
    data_keys: DataConfig | None = None,
    total_charge: float = 0.0,
    *,
    where: str = "structure",
) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None]:
    """The fragments and the applied electric field of one structure (inputs, not labels).

    Returns:
        ``(fragments, field)``: ``(ids (N,) int64, charges (F,) e)`` or None, and a (3,)
        V/Å array or None.

    Raises:
        ValueError: a bad fragment assignment (named by ``where``) or field.
    """
    k = data_keys or DataConfig()
    fragments = fragments_from_atoms(
        atoms,
        fragment_key=k.fragment_key,
        charges_key=k.fragment_charges_key,
        split_key=k.fragment_split_key,
        total_charge=total_charge,
        where=where,
    )
    field = atoms.info.get(k.electric_field_key)
    if field is not None:
        try:
            field = check_electric_field(field)
        except ValueError as error:
            raise ValueError(f"{where}: {error} (key {k.electric_field_key!r})") from None
    return fragments, field


def read_structures(path: str | os.PathLike, format: str | None = None) -> list[ase.Atoms]:
    """All structures in ``path`` (``ase.io.read(path, ":")``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ASE cannot read it, or it holds no structure.
    """
    path = require_file(path, "structure file")
    try:
        images = ase.io.read(path, ":", format=format)
    except Exception as error:  # ASE raises many kinds for unreadable files
        raise ValueError(f"cannot read structures from {str(path)!r}: {error}") from None
    if not isinstance(images, list):
        images = [images]
    if not images:
        raise ValueError(f"structure file {str(path)!r} holds no structures")
    return images


def graphs_from_structures(
    images: list[ase.Atoms],
    cutoff: float,
    data_keys: DataConfig | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    source: str = "structures",
    progress: bool = False,
) -> list[AtomicGraph]:
    """One labelled graph per structure, with its neighbour list (cutoff in Å)."""
    graphs = []
    for index, atoms in enumerate(
        tqdm(images, desc=f"neighbour lists {source}", disable=not progress, leave=False)
    ):
        where = f"{source}[{index}]"
        labels, total_charge = extract_labels(atoms, data_keys, where=where)
        fragments, field = extract_conditions(atoms, data_keys, total_charge, where=where)
        try:
            graph = graph_from_atoms(
                atoms,
                cutoff,
                dtype=torch.float64,
                labels=labels,
                total_charge=total_charge,
                fragments=fragments,
                electric_field=field,
                read_info=False,
            )
        except ValueError as error:  # NaN positions, a singular cell, ...: name the structure
            raise ValueError(f"{where}: {error}") from None
        graphs.append(graph.to(dtype=dtype))
    return graphs


def check_structures(graphs: list[AtomicGraph], route, source: str = "structures") -> None:
    """Check that no two atoms coincide and that every structure's pbc is one the model
    can sum, naming the structure by its index in the file.

    Args:
        graphs: one-structure graphs in file order.
        route: :meth:`hybridpot.electrostatics.Electrostatics.route` of the model's
            electrostatics (the one place that decides bulk/slab/molecule), or None for a
            short-range-only model (any periodicity).
        source: the file, for messages (``source[index]``).

    Raises:
        ValueError: ``"<source>[<index>]: pbc ... is not supported ..."`` or
            ``"<source>[<index>]: atoms i and j coincide ..."``.
    """
    for index, graph in enumerate(graphs):
        if graph.num_edges:
            # Two atoms (or an atom and an image) at one place: every edge within the
            # cutoff is listed, so a zero-length edge finds them.
            lengths = graph.edge_vectors().norm(dim=-1)
            shortest = int(lengths.argmin())
            if float(lengths[shortest]) < COINCIDENT:
                i, j = (int(x) for x in graph.edge_index[:, shortest])
                raise ValueError(
                    f"{source}[{index}]: atoms {i} and {j} coincide (distance "
                    f"{float(lengths[shortest]):.3g} Å)"
                )
        if route is not None:
            try:
                route(graph.pbc[0].tolist())
            except ValueError as error:
                raise ValueError(f"{source}[{index}]: {error}") from None


# ----------------------------------------------------------------------------- disk cache
def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_path(path: Path, cutoff: float, data_keys: DataConfig, cache_dir: Path) -> Path:
    keys_text = repr(sorted(vars(data_keys).items()))
    key = hashlib.sha256(
        f"{file_hash(path)}|{float(cutoff)!r}|{keys_text}|{_CACHE_VERSION}".encode()
    ).hexdigest()[:24]
    return cache_dir / f"{path.stem}-{key}.pt"


def _graph_to_dict(g: AtomicGraph) -> dict:
    return {
        "positions": g.positions,
        "numbers": g.numbers,
        "cell": g.cell,
        "pbc": g.pbc,
        "total_charge": g.total_charge,
        "edge_index": g.edge_index,
        "cell_shifts": g.cell_shifts,
        "cutoff": g.cutoff,
        "labels": dict(g.labels),
        "fragment": g.fragment,
        "fragment_charge": g.fragment_charge,
        "electric_field": g.electric_field,
    }


def _graph_from_dict(d: dict) -> AtomicGraph:
    return AtomicGraph(
        positions=d["positions"],
        numbers=d["numbers"],
        cell=d["cell"],
        pbc=d["pbc"],
        total_charge=d["total_charge"],
        batch=torch.zeros(d["positions"].shape[0], dtype=torch.long),
        edge_index=d["edge_index"],
        cell_shifts=d["cell_shifts"],
        cutoff=float(d["cutoff"]),
        labels=dict(d["labels"]),
        fragment=d["fragment"],
        fragment_charge=d["fragment_charge"],
        electric_field=d["electric_field"],
    )


def load_graphs(
    path: str | os.PathLike,
    cutoff: float,
    data_keys: DataConfig | None = None,
    *,
    dtype: torch.dtype = torch.float64,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    route=None,
) -> list[AtomicGraph]:
    """Labelled graphs of every structure in ``path``, neighbour lists computed once.

    With ``cache_dir`` the graphs (float64) are stored in
    ``cache_dir/<stem>-<hash>.pt``, where the hash covers the file's bytes, the cutoff
    and the label keys, and are read back (``weights_only``) on the next call.

    Every structure is checked while it is read (finite positions and cell, a periodic
    cell that is not singular, labels of the right shape, and with ``route`` a
    periodicity the electrostatics support: :func:`check_structures`); an error names
    the file and the structure's index in it, ``path[index]``.
    """
    data_keys = data_keys or DataConfig()
    path = Path(path)
    cache = None
    if cache_dir is not None:
        if not path.is_file():
            raise FileNotFoundError(f"structure file {str(path)!r} does not exist")
        cache = _cache_path(path, cutoff, data_keys, Path(cache_dir))
        stored = None
        if cache.is_file():
            try:
                stored = load_weights_only(cache, "neighbour-list cache")
            except ValueError as error:  # e.g. truncated: rebuild it (it is only a cache)
                logger.warning("%s; rebuilding it", error)
        if isinstance(stored, dict):
            if stored.get("version") == _CACHE_VERSION:
                graphs = [_graph_from_dict(d) for d in stored["graphs"]]
                check_structures(graphs, route, str(path))
                return [g.to(dtype=dtype) for g in graphs]
    images = read_structures(path, data_keys.format)
    graphs = graphs_from_structures(
        images, cutoff, data_keys, dtype=torch.float64, source=str(path), progress=progress
    )
    check_structures(graphs, route, str(path))
    if cache is not None:
        atomic_save(
            {"version": _CACHE_VERSION, "graphs": [_graph_to_dict(g) for g in graphs]}, cache
        )
    return [g.to(dtype=dtype) for g in graphs]


# ----------------------------------------------------------------------------- split, loader
def random_split(n: int, fractions: tuple[float, ...], seed: int) -> list[list[int]]:
    """Shuffle ``range(n)`` with ``seed`` and cut off parts of the given fractions.

    Returns ``len(fractions) + 1`` sorted index lists: the rest first, then one per
    fraction (each at least one structure when its fraction is > 0).

    Raises:
        ValueError: the fractions leave no structure for the rest.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    sizes = [max(1, round(f * n)) if f > 0 else 0 for f in fractions]
    if sum(sizes) >= n:
        raise ValueError(
            f"cannot split {n} structures with fractions {list(fractions)}: "
            f"{sum(sizes)} held out leaves none for training"
        )
    parts, start = [], n - sum(sizes)
    for size in sizes:
        parts.append(sorted(order[start : start + size]))
        start += size
    return [sorted(order[: n - sum(sizes)]), *parts]


class GraphLoader:
    """Batches of graphs (:func:`hybridpot.data.batch_graphs`), optionally shuffled.

    The order of epoch ``e`` comes from a generator seeded with ``seed + e``, so an
    epoch's batches do not depend on what ran before it (exact resumption needs only
    the epoch number; call :meth:`set_epoch`).
    """

    def __init__(
        self,
        graphs: list[AtomicGraph],
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
    ):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not graphs:
            raise ValueError("GraphLoader needs at least one graph, got none")
        self.graphs = list(graphs)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.device = device
        self.epoch = 0
        self._fixed: list[AtomicGraph] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffled order of ``epoch`` on the next iteration."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return -(-len(self.graphs) // self.batch_size)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.graphs)))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.graphs), generator=generator).tolist()

    def _batch(self, indices: list[int]) -> AtomicGraph:
        batch = batch_graphs([self.graphs[i] for i in indices])
        return batch.to(self.device) if self.device is not None else batch

    def __iter__(self) -> Iterator[AtomicGraph]:
        if not self.shuffle:
            # A fixed order: batch once, reuse every epoch.
            if self._fixed is None:
                self._fixed = [
                    self._batch(list(range(s, min(s + self.batch_size, len(self.graphs)))))
                    for s in range(0, len(self.graphs), self.batch_size)
                ]
            yield from self._fixed
            return
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            yield self._batch(order[start : start + self.batch_size])
