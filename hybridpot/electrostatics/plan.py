"""The host-side plan of a batched Coulomb sum: parameters, pairs and mesh groups.

Everything about a batch that depends on values rather than on gradients is decided
here, once, before the differentiable sum runs (:mod:`.batched`): which sum each
structure gets (:meth:`Electrostatics.route`), its Ewald split and mesh (``tuning``),
the real-space pairs of all structures in one list (vesin, on the positions' device),
which structures share a mesh shape (one batched mesh each), and the slab geometry.
The sum itself then runs with no Python loop over structures and no host sync.

A plan is valid for the positions it was built from (like a graph's edge list) and for
the settings of the module that built it (``settings``); it is cached on the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.neighbors import neighbor_pairs
from ..data.segments import per_structure_matmul
from .slab import choose_gap, slab_axis, slab_geometry, validate_slab_cell
from .tuning import CoulombParameters

#: Two point charges closer than this (Å) are coincident: their energy is infinite.
COINCIDENT_DISTANCE = 1e-8


@dataclass
class MeshGroup:
    """Structures that share one mesh (method, interpolation order and shape).

    Attributes:
        method: ``"pme"`` or ``"p3m"``.
        nodes: interpolation nodes per axis.
        shape: (nx, ny, nz) mesh points along the three rows of the internal cell.
        structures: (G,) int64 structure indices in the batch.
        atoms: (N_g,) int64 atom indices of those structures.
        slot: (N_g,) int64 position of each atom's structure in ``structures``.
        smearing: (G,) Ewald split length s (Å) of each structure.
        filters: (G, nx, ny, nz // 2 + 1) k-space filters, kept after the first call
            whose cells needed no gradient (they depend only on the plan's cells).
        filter_key: what the filters depend on (method, nodes, shape, split lengths and
            the internal cells' values), for a cache shared between plans (MD at a fixed
            cell rebuilding its plan).
    """

    method: str
    nodes: int
    shape: tuple[int, int, int]
    structures: torch.Tensor
    atoms: torch.Tensor
    slot: torch.Tensor
    smearing: torch.Tensor
    filters: torch.Tensor | None = None
    filter_key: tuple = ()


@dataclass
class CoulombPlan:
    """Everything :func:`~hybridpot.electrostatics.batched.coulomb_energies` needs.

    Attributes:
        settings: the (sigma_q, method, accuracy, overrides) it was built for.
        num_graphs: B.
        pair_i, pair_j: (P,) int64 atoms of every real-space pair (periodic and slab
            structures, r < r_c, each pair once) and of every pair of a non-periodic
            structure (all pairs i < j).
        pair_shifts: (P, 3) float integer cell shifts, r_ij = r_j - r_i + S @ cell.
        pair_structure: (P,) int64.
        pair_inv_width: (P,) float 1 / (sqrt(2) s) of the pair's structure (the long-range
            part the mesh takes), 0 for a non-periodic structure (nothing taken).
        pair_cutoff: (P,) float real-space cutoff of the pair's structure (Å; inf for a
            non-periodic one); pairs were listed up to it plus ``skin``.
        skin: Å added to the real-space cutoffs when listing (see :meth:`restricted`).
        mesh_groups: the mesh sums (periodic cells and slabs).
        slab_structures: (S,) int64 slabs, with ``slab_axis`` (S,) their vacuum row,
            ``slab_length`` (S,) Å the internal cell's extent along the normal and
            ``slab_origin`` (S,) Å the lowest atom's height (constants of the plan).
        ewald_structures: structures summed one by one with the Ewald method.
        parameters: per structure, its :class:`CoulombParameters` (None: direct sum).
        routes: per structure, :meth:`Electrostatics.route`'s answer.
    """

    settings: tuple
    num_graphs: int
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    pair_shifts: torch.Tensor
    pair_structure: torch.Tensor
    pair_inv_width: torch.Tensor
    pair_cutoff: torch.Tensor
    mesh_groups: list[MeshGroup]
    slab_structures: torch.Tensor
    slab_axis: torch.Tensor
    slab_length: torch.Tensor
    slab_origin: torch.Tensor
    ewald_structures: list[int] = field(default_factory=list)
    parameters: list[CoulombParameters | None] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    skin: float = 0.0

    def restricted(self, positions: torch.Tensor, cell: torch.Tensor) -> CoulombPlan:
        """This plan with only the pairs closer than their cutoff at ``positions``.

        A plan listed with a skin stays valid while no atom moved more than half the
        skin; this drops the pairs that are (now) beyond the cutoff, so the sum equals
        that of a plan built afresh (Verlet list). Reads values: a host sync.
        """
        shift = per_structure_matmul(self.pair_shifts, cell.detach(), self.pair_structure)
        vectors = positions.detach()[self.pair_j] - positions.detach()[self.pair_i] + shift
        keep = torch.linalg.norm(vectors, dim=1) < self.pair_cutoff
        pairs = (
            "pair_i",
            "pair_j",
            "pair_shifts",
            "pair_structure",
            "pair_inv_width",
            "pair_cutoff",
        )
        values = {k: v for k, v in vars(self).items()}
        values.update({k: getattr(self, k)[keep] for k in pairs})
        return CoulombPlan(**values)

    def to(self, device=None, dtype=None) -> CoulombPlan:
        """A copy with tensors on ``device`` and float tensors in ``dtype``."""

        def move(t):
            if isinstance(t, torch.Tensor):
                if dtype is not None and t.is_floating_point():
                    t = t.to(dtype)
                return t.to(device) if device is not None else t
            return t

        groups = [MeshGroup(**{k: move(v) for k, v in vars(g).items()}) for g in self.mesh_groups]
        values = {k: move(v) for k, v in vars(self).items() if k != "mesh_groups"}
        return CoulombPlan(**values, mesh_groups=groups)


def _check_periodic_cell(cell: np.ndarray, structure: int) -> None:
    lengths = np.linalg.norm(cell, axis=1)
    volume = abs(float(np.linalg.det(cell)))
    if not volume > 1e-10 * float(np.prod(lengths)) or volume == 0:
        raise ValueError(
            f"cell of structure {structure} is singular (volume {volume:.3g} Å^3, "
            f"rows {cell.tolist()}); a periodic cell needs three independent vectors"
        )


def _reject_coincident(i, j, shifts, distances, structure: int) -> None:
    """Point charges at the same place have infinite energy: name both atoms."""
    if i.numel() == 0:
        return
    close = distances < COINCIDENT_DISTANCE
    if bool(close.any()):
        k = int(torch.nonzero(close)[0, 0])
        shift = [int(x) for x in shifts[k].tolist()]
        raise ValueError(
            f"positions: atoms {int(i[k])} and {int(j[k])} of structure {structure} "
            f"coincide (distance {float(distances[k]):.3g} Å, cell shift {shift}); "
            "point charges (sigma_q = 0) at the same place have infinite energy"
        )


def build_plan(module, positions, cell, pbc, batch, skin: float = 0.0) -> CoulombPlan:
    """Plan the Coulomb sum of a batch for ``module`` (an :class:`Electrostatics`).

    Args:
        positions: (N, 3) Å (values only).
        cell: (B, 3, 3) Å.
        pbc: (B, 3) bool.
        batch: (N,) int64.
        skin: Å listed beyond each real-space cutoff (Verlet list; 0: none). A plan with
            a skin must be :meth:`CoulombPlan.restricted` to the current positions.

    Raises:
        ValueError: unsupported periodicity, singular or non-orthogonal cells, coincident
            point charges, meshes over the size limit (naming the structure).
    """
    device = positions.device
    dtype = positions.dtype
    num_graphs = cell.shape[0]
    points = positions.detach().to(torch.float64)
    cells = cell.detach().to(torch.float64)
    cells_host = cells.cpu().numpy()
    pbc_rows = pbc.detach().cpu().tolist()
    batch_host = batch.detach().cpu()
    order = torch.argsort(batch_host, stable=True)
    counts = torch.bincount(batch_host, minlength=num_graphs).tolist()
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()
    sigma_q = module.sigma_q

    pair_parts: list[tuple] = []
    groups: dict[tuple, list] = {}
    slabs: list[tuple] = []
    ewald: list[int] = []
    parameters: list[CoulombParameters | None] = []
    routes: list[str] = []
    for b in range(num_graphs):
        route = module.route(pbc_rows[b], structure=b)
        routes.append(route)
        atoms = order[starts[b] : starts[b] + counts[b]].to(device)
        n = counts[b]
        if n == 0:
            parameters.append(None)
            continue
        pos_b = points.index_select(0, atoms)
        if route == "direct":
            parameters.append(None)
            i, j = torch.triu_indices(n, n, offset=1, device=device)
            shifts = torch.zeros((i.shape[0], 3), dtype=torch.int64, device=device)
            if sigma_q == 0:
                distances = torch.linalg.norm(pos_b[j] - pos_b[i], dim=1)
                _reject_coincident(i, j, shifts, distances, b)
            pair_parts.append((atoms[i], atoms[j], shifts, b, 0.0, math.inf))
            continue
        cell_np = cells_host[b]
        if not route.startswith("slab+"):
            _check_periodic_cell(cell_np, b)
            params = module.parameters_for(cell_np, n, abs(float(np.linalg.det(cell_np))))
            internal_np, list_pbc = cell_np, [True, True, True]
        else:
            axis = slab_axis(pbc_rows[b])
            validate_slab_cell(cell_np, axis, b)
            geometry = slab_geometry(pos_b.cpu().numpy(), cell_np, axis)
            periodic_rows = cell_np.copy()
            periodic_rows[axis] = 0.0
            params = module.parameters_for(periodic_rows, n, n * geometry["d"] ** 3)
            gap = module.overrides.get("slab_gap")
            if gap is None:
                gap = choose_gap(
                    geometry["a1"],
                    geometry["a2"],
                    n,
                    geometry["d"],
                    module.accuracy,
                    params.real_space_cutoff,
                    sigma_q,
                )
            elif gap < params.real_space_cutoff:
                raise ValueError(
                    f"slab_gap {gap} Å must be >= the real-space cutoff "
                    f"{params.real_space_cutoff:.4g} Å"
                )
            length = geometry["thickness"] + gap
            normal = np.cross(geometry["a1"], geometry["a2"]) / geometry["area"]
            internal_np = cell_np.copy()
            internal_np[axis] = normal * length
            list_pbc = [bool(p) for p in pbc_rows[b]]
            origin = float((pos_b.cpu().numpy() @ normal).min())
            slabs.append((b, axis, length, origin))
        parameters.append(params)
        box = torch.as_tensor(internal_np, device=device)
        i, j, shifts, distances = neighbor_pairs(
            pos_b,
            box,
            list_pbc,
            params.real_space_cutoff + skin,
            full_list=False,
            distances=True,
            sort=positions.is_cuda,  # vesin's CPU order is reproducible
        )
        if sigma_q == 0:
            _reject_coincident(i, j, shifts, distances, b)
        inv_width = 1.0 / (math.sqrt(2.0) * params.smearing)
        pair_parts.append((atoms[i], atoms[j], shifts, b, inv_width, params.real_space_cutoff))
        if params.method == "ewald":
            ewald.append(b)
            continue
        shape = params.mesh_shape(internal_np)
        key = (params.method, params.interpolation_nodes, shape)
        groups.setdefault(key, []).append((b, atoms, params.smearing, internal_np.tobytes()))

    def cat(parts, empty_shape, dtype_):
        if parts:
            return torch.cat(parts)
        return torch.zeros(empty_shape, dtype=dtype_, device=device)

    long = torch.int64
    pair_i = cat([p[0] for p in pair_parts], (0,), long)
    pair_j = cat([p[1] for p in pair_parts], (0,), long)
    pair_shifts = cat([p[2] for p in pair_parts], (0, 3), long).to(dtype)
    pair_structure = cat(
        [torch.full((p[0].shape[0],), p[3], dtype=long, device=device) for p in pair_parts],
        (0,),
        long,
    )
    pair_inv_width = cat(
        [torch.full((p[0].shape[0],), p[4], dtype=dtype, device=device) for p in pair_parts],
        (0,),
        dtype,
    )
    pair_cutoff = cat(
        [torch.full((p[0].shape[0],), p[5], dtype=dtype, device=device) for p in pair_parts],
        (0,),
        dtype,
    )
    mesh_groups = []
    for (method, nodes, shape), members in groups.items():
        mesh_groups.append(
            MeshGroup(
                method=method,
                nodes=int(nodes),
                shape=tuple(int(x) for x in shape),
                structures=torch.tensor([m[0] for m in members], dtype=long, device=device),
                atoms=torch.cat([m[1] for m in members]),
                slot=torch.cat(
                    [
                        torch.full((m[1].shape[0],), k, dtype=long, device=device)
                        for k, m in enumerate(members)
                    ]
                ),
                smearing=torch.tensor([m[2] for m in members], dtype=dtype, device=device),
                filter_key=(
                    method,
                    int(nodes),
                    tuple(shape),
                    tuple(m[2] for m in members),
                    b"".join(m[3] for m in members),
                ),
            )
        )
    return CoulombPlan(
        settings=module.settings,
        num_graphs=num_graphs,
        pair_i=pair_i,
        pair_j=pair_j,
        pair_shifts=pair_shifts,
        pair_structure=pair_structure,
        pair_inv_width=pair_inv_width,
        pair_cutoff=pair_cutoff,
        mesh_groups=mesh_groups,
        slab_structures=torch.tensor([s[0] for s in slabs], dtype=long, device=device),
        slab_axis=torch.tensor([s[1] for s in slabs], dtype=long, device=device),
        slab_length=torch.tensor([s[2] for s in slabs], dtype=dtype, device=device),
        slab_origin=torch.tensor([s[3] for s in slabs], dtype=dtype, device=device),
        ewald_structures=ewald,
        parameters=parameters,
        routes=routes,
        skin=float(skin),
    )
