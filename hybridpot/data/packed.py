"""A packed, indexed file of labelled structures, read on demand (data sets larger than memory).

Why a format of our own rather than ASE's database or HDF5: a training step needs a few
structures at random positions, fast, from several worker processes. ASE's database
(sqlite) costs a query and a row decode into an ``Atoms`` per structure (not measured
here); HDF5 or LMDB would be a new dependency. Here a structure is a few slices of
memory-mapped arrays: reading is a page-cache copy, any number of processes can map the
file, only the pages touched stay resident, and writing is sequential.

Layout (little-endian)::

    b"HYBRIDPOT-PACK\\n"                 magic (15 bytes) and b"\\0"
    uint64 header length, header         JSON: version, counts, label keys, arrays
    arrays, each 64-byte aligned          raw C-order data at the offsets in the header

Arrays (S structures, N atoms in total): ``atom_start`` (S+1,) int64, ``numbers`` (N,)
int16, ``positions`` (N, 3) float64 Å, ``cell`` (S, 3, 3) Å, ``pbc`` (S, 3) bool,
``total_charge`` (S,) e, ``weight`` (S,), and per label present in any structure its
values (``energy`` (S,) eV, ``forces`` (N, 3) eV/Å, ``stress`` (S, 3, 3) eV/Å³,
``charges`` (N,) e, ``dipole`` (S, 3) e·Å) with ``<label>_mask`` (S,) bool (absent
labels are zeros there and never used). Inputs that only some data sets have, written
when any structure has them (version 2):

* fragments: ``fragment_count`` (S,) int32 (0: the structure has none; it is then one
  group with its total charge), ``fragment`` (N,) int32 each atom's fragment within its
  structure, ``fragment_charges`` (F,) e and ``fragment_start`` (S+1,) int64 (structure
  s's fragments are rows ``fragment_start[s]:fragment_start[s+1]``);
* an applied field: ``electric_field`` (S, 3) V/Å with ``electric_field_mask`` (S,).

Version-1 files (no such arrays) are read as before. Writing goes through temporary
files and :func:`hybridpot.fileio.atomic_write`, so a crash never leaves a half-written
file.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterable
from pathlib import Path

import ase
import numpy as np
import torch

from .. import keys
from ..fileio import atomic_write, require_file
from .graph import AtomicGraph, _check_finite_atoms
from .neighbors import neighbor_pairs

MAGIC = b"HYBRIDPOT-PACK\n\0"
VERSION = 2
#: Versions this reader understands (1: no fragment or field arrays).
READABLE_VERSIONS = (1, 2)
ALIGN = 64
#: Label name -> (per atom?, shape of one row)
LABEL_SHAPES = {
    keys.ENERGY: (False, ()),
    keys.FORCES: (True, (3,)),
    keys.STRESS: (False, (3, 3)),
    keys.CHARGES: (True, ()),
    keys.DIPOLE: (False, (3,)),
}
_BASE = {
    "numbers": (True, (), "<i2"),
    "positions": (True, (3,), "<f8"),
    "cell": (False, (3, 3), "<f8"),
    "pbc": (False, (3,), "|b1"),
    "total_charge": (False, (), "<f8"),
    "weight": (False, (), "<f8"),
    "atom_count": (False, (), "<i4"),  # temporary: becomes atom_start
}
#: Optional inputs: name -> (per atom?, shape of one row, dtype); written from the first
#: structure that has them on (earlier rows zero-filled).
_CONDITIONS = {
    "fragment_count": (False, (), "<i4"),
    "fragment": (True, (), "<i4"),
    keys.ELECTRIC_FIELD: (False, (3,), "<f8"),
}
#: Ragged: one row per fragment, no zero-fill (structures without fragments add none).
_FRAGMENT_CHARGES = "fragment_charges"


def is_packed(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file that starts with the packed format's magic bytes."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class PackWriter:
    """Append labelled structures, then :meth:`close` writes the packed file atomically.

    Memory stays bounded: rows go to temporary files beside ``path`` as they come.

    Args:
        path: the packed file to write.

    Use as a context manager; on an exception nothing is written and the temporary files
    are removed.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        self._files: dict[str, object] = {}
        self._specs: dict[str, tuple[bool, tuple, str]] = dict(_BASE)
        self._masks: dict[str, list[tuple[int, int]]] = {}
        self.num_structures = 0
        self.num_atoms = 0

    def _write(self, name: str, array: np.ndarray) -> None:
        handle = self._files.get(name)
        if handle is None:
            handle = self._files[name] = open(self._tmp / name, "wb")  # noqa: SIM115
        per_atom, shape, dtype = self._specs[name]
        rows = self.num_atoms if per_atom else self.num_structures
        if handle.tell() == 0 and rows:  # a label first seen now: zeros for earlier rows
            handle.write(np.zeros((rows, *shape), dtype=dtype).tobytes())
        handle.write(np.ascontiguousarray(array, dtype=dtype).tobytes())

    def add(
        self,
        atoms: ase.Atoms,
        labels: dict[str, np.ndarray],
        total_charge: float,
        *,
        fragments: tuple[np.ndarray, np.ndarray] | None = None,
        electric_field: np.ndarray | None = None,
    ) -> None:
        """Append one structure with its labels (shapes as
        :func:`hybridpot.data.dataset.extract_labels` returns them), total charge (e)
        and, when it has them, its fragments ``(ids (N,), charges (F,) e)`` and applied
        field ((3,) V/Å), as :func:`hybridpot.data.dataset.extract_conditions` returns
        them.

        Raises:
            ValueError: non-finite positions or cell, a singular periodic cell, an
                unknown label, or a bad fragment assignment or field.
        """
        from .fragments import check_fragments
        from .graph import check_electric_field

        _check_finite_atoms(atoms)
        n = len(atoms)
        unknown = [k for k in labels if k != keys.WEIGHT and k not in LABEL_SHAPES]
        if unknown:
            raise ValueError(f"labels {unknown} cannot be packed; known: {list(LABEL_SHAPES)}")
        if fragments is not None:  # checked before anything is written
            ids, charges = check_fragments(*fragments, n, total_charge)
        if electric_field is not None:
            electric_field = check_electric_field(electric_field)
        self._write("numbers", atoms.get_atomic_numbers())
        self._write("positions", atoms.get_positions())
        self._write("cell", np.asarray(atoms.get_cell())[None])
        self._write("pbc", atoms.get_pbc()[None])
        self._write("total_charge", np.array([total_charge]))
        self._write("weight", np.asarray(labels.get(keys.WEIGHT, np.ones(1))).reshape(1))
        for name, (per_atom, shape) in LABEL_SHAPES.items():
            if name in labels:
                self._specs.setdefault(name, (per_atom, shape, "<f8"))
                self._write(name, np.asarray(labels[name]).reshape(n if per_atom else 1, *shape))
                self._masks.setdefault(name, []).append((self.num_structures, 1))
            elif name in self._files:
                self._write(name, np.zeros((n if per_atom else 1, *shape)))
        if fragments is not None or "fragment" in self._files:
            self._specs.setdefault("fragment_count", _CONDITIONS["fragment_count"])
            self._specs.setdefault("fragment", _CONDITIONS["fragment"])
            count = 0 if fragments is None else len(charges)
            self._write("fragment_count", np.array([count]))
            self._write("fragment", np.zeros(n) if fragments is None else ids)
            if fragments is not None:
                handle = self._files.get(_FRAGMENT_CHARGES)
                if handle is None:
                    handle = self._files[_FRAGMENT_CHARGES] = open(  # noqa: SIM115
                        self._tmp / _FRAGMENT_CHARGES, "wb"
                    )
                handle.write(np.ascontiguousarray(charges, dtype="<f8").tobytes())
        if electric_field is not None or keys.ELECTRIC_FIELD in self._files:
            self._specs.setdefault(keys.ELECTRIC_FIELD, _CONDITIONS[keys.ELECTRIC_FIELD])
            self._write(
                keys.ELECTRIC_FIELD,
                np.zeros((1, 3)) if electric_field is None else electric_field[None],
            )
            if electric_field is not None:
                self._masks.setdefault(keys.ELECTRIC_FIELD, []).append((self.num_structures, 1))
        self._write("atom_count", np.array([n]))
        self.num_structures += 1
        self.num_atoms += n

    def close(self) -> None:
        """Write the packed file (atomically) and remove the temporary files."""
        try:
            for handle in self._files.values():
                handle.close()
            if self.num_structures == 0:
                raise ValueError(f"packed file {str(self.path)!r}: no structures were added")
            counts = np.fromfile(self._tmp / "atom_count", dtype="<i4")
            arrays: dict[str, tuple[Path | np.ndarray, list[int], str]] = {}
            start = np.zeros(self.num_structures + 1, dtype="<i8")
            np.cumsum(counts.astype(np.int64), out=start[1:])
            arrays["atom_start"] = (start, [self.num_structures + 1], "<i8")
            for name, (per_atom, shape, dtype) in self._specs.items():
                if name not in self._files or name == "atom_count":
                    continue
                rows = self.num_atoms if per_atom else self.num_structures
                arrays[name] = (self._tmp / name, [rows, *shape], dtype)
            if "fragment_count" in self._files:
                counts = np.fromfile(self._tmp / "fragment_count", dtype="<i4")
                fragment_start = np.zeros(self.num_structures + 1, dtype="<i8")
                np.cumsum(counts.astype(np.int64), out=fragment_start[1:])
                arrays["fragment_start"] = (fragment_start, [self.num_structures + 1], "<i8")
                arrays[_FRAGMENT_CHARGES] = (
                    self._tmp / _FRAGMENT_CHARGES,
                    [int(fragment_start[-1])],
                    "<f8",
                )
            for name, spans in self._masks.items():
                mask = np.zeros(self.num_structures, dtype=bool)
                mask[[s for s, _ in spans]] = True
                arrays[f"{name}{keys.MASK_SUFFIX}"] = (mask, [self.num_structures], "|b1")
            self._assemble(arrays)
        finally:
            for handle in self._files.values():
                handle.close()
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _assemble(self, arrays) -> None:
        header = {
            "version": VERSION,
            "num_structures": self.num_structures,
            "num_atoms": self.num_atoms,
            "labels": [k for k in LABEL_SHAPES if k in self._files],
            "arrays": {},
        }
        sizes = {}
        for name, (_, shape, dtype) in arrays.items():
            sizes[name] = int(np.prod(shape)) * np.dtype(dtype).itemsize
        # Offsets are relative to the data start, which follows the header (aligned).
        offset = 0
        for name, (_, shape, dtype) in arrays.items():
            header["arrays"][name] = {"dtype": dtype, "shape": shape, "offset": offset}
            offset += -(-sizes[name] // ALIGN) * ALIGN
        text = json.dumps(header).encode()

        def write(handle) -> None:
            handle.write(MAGIC)
            handle.write(struct.pack("<Q", len(text)))
            handle.write(text)
            data_start = -(-(len(MAGIC) + 8 + len(text)) // ALIGN) * ALIGN
            handle.write(b"\0" * (data_start - handle.tell()))
            for name, (source, _, _) in arrays.items():
                begin = handle.tell()
                if isinstance(source, np.ndarray):
                    handle.write(np.ascontiguousarray(source).tobytes())
                else:
                    with open(source, "rb") as part:
                        shutil.copyfileobj(part, handle, 1 << 22)
                written = handle.tell() - begin
                if written != sizes[name]:
                    raise ValueError(
                        f"array {name!r}: wrote {written} bytes, expected {sizes[name]}"
                    )
                handle.write(b"\0" * ((-written) % ALIGN))

        atomic_write(self.path, write)

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            for handle in self._files.values():
                handle.close()
            shutil.rmtree(self._tmp, ignore_errors=True)


def pack_structures(
    images: Iterable[ase.Atoms],
    path: str | os.PathLike,
    data_keys=None,
    *,
    source: str = "structures",
) -> int:
    """Write labelled structures (labels looked up with ``data_keys``, a
    :class:`~hybridpot.train.config.DataConfig`) to a packed file; returns their number.

    ``images`` may be a generator (``ase.io.iread``): structures are not kept in memory.
    """
    from .dataset import extract_conditions, extract_labels

    with PackWriter(path) as writer:
        for index, atoms in enumerate(images):
            where = f"{source}[{index}]"
            labels, total_charge = extract_labels(atoms, data_keys, where=where)
            fragments, field = extract_conditions(atoms, data_keys, total_charge, where=where)
            try:
                writer.add(atoms, labels, total_charge, fragments=fragments, electric_field=field)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
        count = writer.num_structures
    return count


class PackedDataset:
    """The structures of a packed file as one-structure :class:`AtomicGraph` s, on demand.

    Indexing builds the graph (neighbour list at ``cutoff``) from memory-mapped arrays;
    nothing is read before it is needed. Picklable (worker processes map the file again).

    Args:
        path: a file written by :class:`PackWriter` / ``hybridpot pack``.
        cutoff: neighbour cutoff in Å.
        dtype: float dtype of the graphs.
        route: the electrostatics' routing rule (None: any periodicity), checked per item.
        indices: the subset of structures (None: all), in this order.

    Raises:
        FileNotFoundError, ValueError: no file, not a packed file, or another version.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        cutoff: float,
        *,
        dtype: torch.dtype = torch.float64,
        route=None,
        indices: np.ndarray | list[int] | None = None,
    ):
        self.path = require_file(path, "packed file")
        if not is_packed(self.path):
            raise ValueError(f"{str(self.path)!r} is not a packed file (see hybridpot pack)")
        with open(self.path, "rb") as handle:
            handle.seek(len(MAGIC))
            (length,) = struct.unpack("<Q", handle.read(8))
            self.header = json.loads(handle.read(length))
        if self.header.get("version") not in READABLE_VERSIONS:
            raise ValueError(
                f"packed file {str(self.path)!r} has version {self.header.get('version')}, "
                f"this hybridpot reads versions {list(READABLE_VERSIONS)}"
            )
        self._data_start = -(-(len(MAGIC) + 8 + length) // ALIGN) * ALIGN
        self.cutoff = float(cutoff)
        self.dtype = dtype
        self.route = route
        total = self.header["num_structures"]
        self.indices = np.arange(total) if indices is None else np.asarray(indices, dtype=np.int64)
        self._maps: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ arrays
    def array(self, name: str) -> np.ndarray:
        """The memory-mapped array ``name`` of the whole file (read-only)."""
        if self._maps is None:
            self._maps = {}
        if name not in self._maps:
            spec = self.header["arrays"][name]
            self._maps[name] = np.memmap(
                self.path,
                dtype=np.dtype(spec["dtype"]),
                mode="r",
                offset=self._data_start + spec["offset"],
                shape=tuple(spec["shape"]),
            )
        return self._maps[name]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_maps"] = None  # each process maps the file itself
        return state

    def has(self, name: str) -> bool:
        """Whether the file holds the array ``name`` (optional inputs: fragments, field)."""
        return name in self.header["arrays"]

    @property
    def labels(self) -> list[str]:
        """Label names present in at least one structure of the file."""
        return list(self.header["labels"])

    def subset(self, indices) -> PackedDataset:
        """A view of the structures at positions ``indices`` of this data set."""
        view = PackedDataset.__new__(PackedDataset)
        view.__dict__.update(self.__getstate__())
        view.indices = self.indices[np.asarray(indices, dtype=np.int64)]
        return view

    def __len__(self) -> int:
        return len(self.indices)

    def __add__(self, other: PackedDataset) -> PackedDataset:
        if not isinstance(other, PackedDataset) or other.path != self.path:
            return NotImplemented
        view = self.subset(np.arange(len(self)))
        view.indices = np.concatenate([self.indices, other.indices])
        return view

    # ------------------------------------------------------------------ items
    def __getitem__(self, position: int) -> AtomicGraph:
        if not -len(self) <= position < len(self):
            raise IndexError(f"index {position} out of range for {len(self)} structures")
        index = int(self.indices[position])
        start, stop = (int(x) for x in self.array("atom_start")[index : index + 2])
        positions = torch.from_numpy(np.array(self.array("positions")[start:stop]))
        cell = torch.from_numpy(np.array(self.array("cell")[index]))
        pbc = [bool(p) for p in self.array("pbc")[index]]
        i, j, shifts = neighbor_pairs(positions, cell, pbc, self.cutoff)
        labels = {keys.WEIGHT: torch.tensor([float(self.array("weight")[index])])}
        for name in self.labels:
            if not self.array(f"{name}{keys.MASK_SUFFIX}")[index]:
                continue
            per_atom, shape = LABEL_SHAPES[name]
            rows = slice(start, stop) if per_atom else slice(index, index + 1)
            labels[name] = torch.from_numpy(np.array(self.array(name)[rows]))
        n = stop - start
        fragment = fragment_charge = electric_field = None
        if self.has("fragment_count") and self.array("fragment_count")[index] > 0:
            begin, end = (int(x) for x in self.array("fragment_start")[index : index + 2])
            fragment = torch.from_numpy(
                np.array(self.array("fragment")[start:stop], dtype=np.int64)
            )
            fragment_charge = torch.from_numpy(np.array(self.array(_FRAGMENT_CHARGES)[begin:end]))
        if (
            self.has(keys.ELECTRIC_FIELD)
            and self.array(f"{keys.ELECTRIC_FIELD}{keys.MASK_SUFFIX}")[index]
        ):
            electric_field = torch.from_numpy(np.array(self.array(keys.ELECTRIC_FIELD)[index]))[
                None
            ]
        graph = AtomicGraph(
            positions=positions,
            numbers=torch.from_numpy(np.array(self.array("numbers")[start:stop], dtype=np.int64)),
            cell=cell.unsqueeze(0),
            pbc=torch.tensor(pbc).unsqueeze(0),
            total_charge=torch.tensor([float(self.array("total_charge")[index])]),
            batch=torch.zeros(n, dtype=torch.long),
            edge_index=torch.stack([i, j]).reshape(2, -1),
            cell_shifts=shifts.to(torch.float64).reshape(-1, 3),
            cutoff=self.cutoff,
            labels=labels,
            fragment=fragment,
            fragment_charge=fragment_charge,
            electric_field=electric_field,
        )
        if self.route is not None:
            from .dataset import check_structures

            check_structures([graph], self.route, f"{self.path}[{index}]")
        return graph.to(dtype=self.dtype)

    # ------------------------------------------------------------------ statistics
    def atom_counts(self) -> np.ndarray:
        """(len,) atoms per structure of this view."""
        start = self.array("atom_start")
        return (start[self.indices + 1] - start[self.indices]).astype(np.int64)

    def elements(self) -> list[str]:
        """Chemical symbols in the file, sorted by atomic number (read in chunks)."""
        from ase.data import chemical_symbols

        numbers = self.array("numbers")
        seen: set[int] = set()
        for begin in range(0, len(numbers), 1 << 22):
            seen.update(np.unique(numbers[begin : begin + (1 << 22)]).tolist())
        return [chemical_symbols[z] for z in sorted(seen)]

    def label_mask(self, name: str) -> np.ndarray:
        """(len,) bool: which structures of this view carry label ``name``."""
        if name not in self.labels:
            return np.zeros(len(self), dtype=bool)
        return np.asarray(self.array(f"{name}{keys.MASK_SUFFIX}")[self.indices])

    def compositions_and_energies(self, elements: list[str]):
        """``(counts (len, S), energies (len,) eV, labelled (len,) bool)`` of this view.

        Raises:
            ValueError: the file holds an element missing from ``elements``.
        """
        from ase.data import atomic_numbers, chemical_symbols

        table = np.full(119, -1, dtype=np.int64)
        for k, symbol in enumerate(elements):
            table[atomic_numbers[symbol]] = k
        start = self.array("atom_start")
        numbers = self.array("numbers")
        counts = np.zeros((len(self), len(elements)))
        for row, index in enumerate(self.indices):
            species = table[numbers[start[index] : start[index + 1]]]
            if (species < 0).any():
                z = int(numbers[start[index] : start[index + 1]][species < 0][0])
                raise ValueError(
                    f"structure holds element {chemical_symbols[z]!r}, not in the model's "
                    f"elements {elements}"
                )
            counts[row] = np.bincount(species, minlength=len(elements))
        labelled = self.label_mask(keys.ENERGY)
        energies = (
            np.asarray(self.array(keys.ENERGY)[self.indices], dtype=np.float64)
            if keys.ENERGY in self.labels
            else np.zeros(len(self))
        )
        return counts, energies, labelled

    def force_sums(self) -> tuple[float, int]:
        """(sum of squared labelled force components, their number) over this view."""
        if keys.FORCES not in self.labels:
            return 0.0, 0
        start = self.array("atom_start")
        forces = self.array(keys.FORCES)
        mask = self.label_mask(keys.FORCES)
        total, count = 0.0, 0
        for index in self.indices[mask]:
            rows = forces[start[index] : start[index + 1]]
            total += float(np.square(rows).sum())
            count += rows.size
        return total, count
