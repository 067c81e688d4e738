"""The atomic graph: one structure or a batch of them, as tensors.

A graph holds everything the network and the electrostatics need: positions, species,
cell, per-axis periodicity, total charge, edges with integer cell shifts and the batch
index. Reference labels (energy, forces, ...) travel beside it in ``labels``; a label
that a structure lacks is simply absent (or masked), never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import ase
import numpy as np
import torch

from .. import keys
from ..device import resolve_device
from .fragments import check_fragments, fragments_from_atoms
from .neighbors import edge_vectors, neighbor_pairs


@dataclass
class AtomicGraph:
    """A batch of B >= 1 structures with N atoms and E directed edges in total.

    Attributes:
        positions: (N, 3) Å, float.
        numbers: (N,) int64 atomic numbers.
        cell: (B, 3, 3) Å, rows are lattice vectors.
        pbc: (B, 3) bool.
        total_charge: (B,) e, same float dtype as positions.
        batch: (N,) int64 structure index of every atom.
        edge_index: (2, E) int64, rows (i, j) for the edge i -> j.
        cell_shifts: (E, 3) float, integer-valued: r_ij = r_j - r_i + S_ij @ cell.
        cutoff: Å, the cutoff the edges were built with.
        labels: reference values keyed by :mod:`hybridpot.keys` names, with per-structure
            (B, ...) or per-atom (N, ...) leading dimension; ``<key>_mask`` (B,) bool
            says which structures carry the label when only some do.
        fragment: (N,) int64 global fragment index of every atom (fragments numbered
            structure by structure, each structure's a contiguous range), or None: each
            structure is one fragment. See :mod:`hybridpot.data.fragments`.
        fragment_charge: (F,) e, the charge each fragment's charges sum to (None with
            ``fragment``); the fragments of a structure add up to its ``total_charge``.
        electric_field: (B, 3) V/Å, a uniform external field per structure, or None (no
            field).
    """

    positions: torch.Tensor
    numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    total_charge: torch.Tensor
    batch: torch.Tensor
    edge_index: torch.Tensor
    cell_shifts: torch.Tensor
    cutoff: float
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    fragment: torch.Tensor | None = None
    fragment_charge: torch.Tensor | None = None
    electric_field: torch.Tensor | None = None
    # Derived data kept with the graph (Coulomb plans, passed checks); not copied by batching.
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ sizes
    @property
    def num_graphs(self) -> int:
        """B, the number of structures."""
        return int(self.cell.shape[0])

    @property
    def num_nodes(self) -> int:
        """N, the number of atoms over all structures."""
        return int(self.positions.shape[0])

    @property
    def num_edges(self) -> int:
        """E, the number of directed edges."""
        return int(self.edge_index.shape[1])

    @property
    def n_atoms(self) -> torch.Tensor:
        """(B,) int64, atoms per structure."""
        return torch.bincount(self.batch, minlength=self.num_graphs)

    @property
    def charge_groups(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The charge constraints: ``(group (N,) int64, group_charge (G,) e)``, each atom's
        group index and each group's total charge. Fragments when the graph has them,
        else one group per structure (``batch``, ``total_charge``)."""
        if self.fragment is None:
            return self.batch, self.total_charge
        return self.fragment, self.fragment_charge

    # ------------------------------------------------------------------ geometry
    def edge_vectors(
        self, positions: torch.Tensor | None = None, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(E, 3) Å, r_ij, differentiable w.r.t. the (optionally strained) positions and cell."""
        return edge_vectors(
            self.positions if positions is None else positions,
            self.cell if cell is None else cell,
            self.edge_index,
            self.cell_shifts,
            self.batch,
        )

    # ------------------------------------------------------------------ long range
    def coulomb_plan(self, electrostatics):
        """The :class:`~hybridpot.electrostatics.plan.CoulombPlan` of this graph for
        ``electrostatics`` (an :class:`~hybridpot.electrostatics.Electrostatics`).

        Built on first use and kept with the graph, like its edges (both are valid for
        the positions the graph was built with): repeated calls on the same graph (MD
        inner loops, benchmarks, the epochs of a cached batch) skip the host work.
        """
        key = ("coulomb", electrostatics.settings)
        plan = self._cache.get(key)
        if plan is None:
            plan = electrostatics.plan(self.positions, self.cell, self.pbc, self.batch)
            self._cache = {k: v for k, v in self._cache.items() if k[0] != "coulomb"}
            self._cache[key] = plan
        return plan

    def check_once(self, name: str, check) -> None:
        """Run ``check()`` (a validation that reads values on the host) the first time
        ``name`` is asked for this graph, and remember that it passed."""
        key = ("checked", name)
        if key not in self._cache:
            check()
            self._cache[key] = True

    # ------------------------------------------------------------------ conversion
    def to(self, device=None, dtype: torch.dtype | None = None) -> AtomicGraph:
        """A copy on ``device`` with float tensors (and float labels) cast to ``dtype``."""

        def move(t: torch.Tensor) -> torch.Tensor:
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            return t.to(device) if device is not None else t

        changes = {
            f.name: move(getattr(self, f.name))
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        changes["labels"] = {k: move(v) for k, v in self.labels.items()}
        changes["_cache"] = {
            k: (v.to(device, dtype) if k[0] == "coulomb" else v) for k, v in self._cache.items()
        }
        return replace(self, **changes)

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    @property
    def device(self) -> torch.device:
        return self.positions.device


def _check_finite_atoms(atoms: ase.Atoms) -> None:
    pos = atoms.get_positions()
    if not np.isfinite(pos).all():
        bad = np.argwhere(~np.isfinite(pos).all(axis=1)).ravel()[:5]
        raise ValueError(f"positions must be finite; atoms {bad.tolist()} have NaN or inf")
    cell = np.asarray(atoms.get_cell())
    if not np.isfinite(cell).all():
        raise ValueError(f"cell must be finite, got {cell.tolist()}")
    pbc = atoms.get_pbc()
    if pbc.any():
        periodic_rows = cell[pbc]
        # The periodic lattice vectors must be linearly independent (volume / area > 0).
        s = np.linalg.svd(periodic_rows, compute_uv=False)
        if s.min() < 1e-8 * max(s.max(), 1.0):
            raise ValueError(
                f"cell is singular along its periodic axes (pbc={pbc.tolist()}): "
                f"lattice vectors {periodic_rows.tolist()} are linearly dependent"
            )
        if pbc.all() and abs(np.linalg.det(cell)) < 1e-8:
            raise ValueError(f"cell is singular (volume {np.linalg.det(cell):.3g} Å³)")


def graph_from_atoms(
    atoms: ase.Atoms,
    cutoff: float,
    *,
    dtype: torch.dtype = torch.float64,
    labels: dict[str, np.ndarray] | None = None,
    total_charge: float | None = None,
    device: torch.device | str | None = None,
    fragments: tuple[np.ndarray, np.ndarray] | None = None,
    electric_field=None,
    read_info: bool = True,
) -> AtomicGraph:
    """Build a one-structure graph from ``atoms``.

    Args:
        atoms: the structure; ``atoms.info["charge"]`` is its total charge (default 0),
            ``atoms.arrays["fragment"]`` with ``atoms.info["fragment_charges"]`` its
            fragments and ``atoms.info["electric_field"]`` (V/Å) an applied field.
        cutoff: neighbour cutoff in Å.
        dtype: float dtype of positions, cell and charges.
        labels: optional reference values (keys from :mod:`hybridpot.keys`).
        total_charge: overrides ``atoms.info["charge"]`` when given.
        device: where the graph lives; its neighbour list is built there (on a GPU by
            vesin's CUDA search, without a round trip through the host).
        fragments: ``(ids (N,), charges (F,) e)`` (see :mod:`hybridpot.data.fragments`);
            overrides what ``atoms`` carries.
        electric_field: (3,) V/Å; overrides ``atoms.info["electric_field"]``.
        read_info: read total charge, fragments and field from ``atoms`` under the
            default keys when they are not passed; False: use only what is passed
            (datasets with their own keys).

    Raises:
        ValueError: non-finite positions or cell, a singular periodic cell, or a bad
            fragment assignment or field.
    """
    if not isinstance(atoms, ase.Atoms):
        raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    _check_finite_atoms(atoms)
    positions = atoms.get_positions()
    cell = np.asarray(atoms.get_cell(), dtype=np.float64)
    pbc = atoms.get_pbc()
    device = torch.device("cpu") if device is None else resolve_device(device)
    positions_t = torch.tensor(positions, dtype=torch.float64, device=device)
    cell_t = torch.tensor(cell, dtype=torch.float64, device=device)
    i, j, shifts = neighbor_pairs(positions_t, cell_t, [bool(p) for p in pbc], cutoff)
    if total_charge is None:
        total_charge = float(atoms.info.get(keys.TOTAL_CHARGE_INFO, 0.0)) if read_info else 0.0
    n = len(atoms)
    if fragments is None and read_info:
        fragments = fragments_from_atoms(atoms, total_charge=total_charge)
    elif fragments is not None:
        fragments = check_fragments(*fragments, n, total_charge)
    if electric_field is None and read_info:
        electric_field = atoms.info.get(keys.ELECTRIC_FIELD_INFO)
    field_t = None
    if electric_field is not None:
        field_t = torch.tensor(
            check_electric_field(electric_field), dtype=dtype, device=device
        ).reshape(1, 3)
    return AtomicGraph(
        positions=positions_t.to(dtype),
        numbers=torch.tensor(atoms.get_atomic_numbers(), dtype=torch.long, device=device),
        cell=cell_t.to(dtype).unsqueeze(0),
        pbc=torch.tensor(pbc, dtype=torch.bool, device=device).unsqueeze(0),
        total_charge=torch.tensor([total_charge], dtype=dtype, device=device),
        batch=torch.zeros(n, dtype=torch.long, device=device),
        edge_index=torch.stack([i, j]).reshape(2, -1),
        cell_shifts=shifts.to(dtype).reshape(-1, 3),
        cutoff=float(cutoff),
        labels={k: torch.as_tensor(v, device=device) for k, v in (labels or {}).items()},
        fragment=None if fragments is None else torch.tensor(fragments[0], device=device),
        fragment_charge=(
            None if fragments is None else torch.tensor(fragments[1], dtype=dtype, device=device)
        ),
        electric_field=field_t,
    )


def check_electric_field(value) -> np.ndarray:
    """A uniform electric field as a (3,) float64 array in V/Å.

    Raises:
        ValueError: not three finite numbers.
    """
    try:
        field_array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"electric_field must be 3 numbers (V/Å), got {value!r}") from None
    if field_array.shape != (3,) or not np.all(np.isfinite(field_array)):
        raise ValueError(f"electric_field must be 3 finite numbers (V/Å), got {value!r}")
    return field_array


# Labels with one row per atom; all others have one row per structure.
PER_ATOM_LABELS = (keys.FORCES, keys.CHARGES, keys.ENERGIES, keys.BORN_EFFECTIVE_CHARGES)


def batch_graphs(graphs: list[AtomicGraph]) -> AtomicGraph:
    """Concatenate graphs into one batched graph (edge indices offset per structure).

    Labels present in only some graphs are zero-filled where absent and get a
    ``<key>_mask`` (B,) bool saying which structures carry them.
    """
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph, got an empty list")
    cutoffs = {g.cutoff for g in graphs}
    if len(cutoffs) != 1:
        raise ValueError(f"graphs were built with different cutoffs {sorted(cutoffs)}")
    offsets = np.cumsum([0] + [g.num_nodes for g in graphs[:-1]])
    graph_offsets = np.cumsum([0] + [g.num_graphs for g in graphs[:-1]])
    label_keys = sorted({k for g in graphs for k in g.labels if not k.endswith(keys.MASK_SUFFIX)})
    labels = {}
    for key in label_keys:
        parts, mask = [], []
        for g in graphs:
            per_atom = key in PER_ATOM_LABELS
            size = g.num_nodes if per_atom else g.num_graphs
            if key in g.labels:
                value = g.labels[key]
                parts.append(value.reshape(size, *value.shape[1:]) if per_atom else value)
                m = g.labels.get(key + keys.MASK_SUFFIX, torch.ones(g.num_graphs, dtype=torch.bool))
            else:
                template = next(h.labels[key] for h in graphs if key in h.labels)
                parts.append(torch.zeros((size, *template.shape[1:]), dtype=template.dtype))
                m = torch.zeros(g.num_graphs, dtype=torch.bool)
            mask.append(m)
        labels[key] = torch.cat(parts)
        mask = torch.cat(mask)
        if not mask.all():
            labels[key + keys.MASK_SUFFIX] = mask
    fragment = fragment_charge = electric_field = None
    if any(g.fragment is not None for g in graphs):
        # Structures without fragments become one group each; ids offset per graph.
        groups = [g.charge_groups for g in graphs]
        group_offsets = np.cumsum([0] + [int(charge.shape[0]) for _, charge in groups[:-1]])
        fragment = torch.cat([ids + int(o) for (ids, _), o in zip(groups, group_offsets)])
        fragment_charge = torch.cat([charge for _, charge in groups])
    if any(g.electric_field is not None for g in graphs):
        electric_field = torch.cat(
            [
                g.electric_field
                if g.electric_field is not None
                else g.cell.new_zeros((g.num_graphs, 3))
                for g in graphs
            ]
        )
    return AtomicGraph(
        positions=torch.cat([g.positions for g in graphs]),
        numbers=torch.cat([g.numbers for g in graphs]),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        total_charge=torch.cat([g.total_charge for g in graphs]),
        batch=torch.cat([g.batch + int(o) for g, o in zip(graphs, graph_offsets)]),
        edge_index=torch.cat([g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1),
        cell_shifts=torch.cat([g.cell_shifts for g in graphs]),
        cutoff=graphs[0].cutoff,
        labels=labels,
        fragment=fragment,
        fragment_charge=fragment_charge,
        electric_field=electric_field,
    )


def split_graph(graph: AtomicGraph) -> list[AtomicGraph]:
    """Inverse of :func:`batch_graphs`: one graph per structure (labels sliced alike)."""
    n_atoms = graph.n_atoms.tolist()
    starts = np.cumsum([0] + n_atoms[:-1])
    edge_graph = graph.batch[graph.edge_index[0]]
    out = []
    for b, (start, n) in enumerate(zip(starts, n_atoms)):
        node = slice(int(start), int(start + n))
        edge_sel = edge_graph == b
        labels = {}
        for key, value in graph.labels.items():
            per_atom = key in PER_ATOM_LABELS
            labels[key] = value[node] if per_atom else value[b : b + 1]
        fragment = fragment_charge = None
        if graph.fragment is not None:
            # A structure's fragments are a contiguous range of the global numbering.
            ids = graph.fragment[node]
            first, last = int(ids.min()), int(ids.max())
            fragment = ids - first
            fragment_charge = graph.fragment_charge[first : last + 1]
        out.append(
            AtomicGraph(
                positions=graph.positions[node],
                numbers=graph.numbers[node],
                cell=graph.cell[b : b + 1],
                pbc=graph.pbc[b : b + 1],
                total_charge=graph.total_charge[b : b + 1],
                batch=torch.zeros(n, dtype=torch.long, device=graph.device),
                edge_index=graph.edge_index[:, edge_sel] - int(start),
                cell_shifts=graph.cell_shifts[edge_sel],
                cutoff=graph.cutoff,
                labels=labels,
                fragment=fragment,
                fragment_charge=fragment_charge,
                electric_field=(
                    None if graph.electric_field is None else graph.electric_field[b : b + 1]
                ),
            )
        )
    return out
