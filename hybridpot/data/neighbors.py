"""Periodic neighbour lists (vesin), valid for any cell, cutoff and periodicity.

The list is computed without gradients (integer indices and cell shifts only); edge
vectors are recomputed differentiably from positions and cell by :func:`edge_vectors`,
so forces and stress flow through them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import vesin

from .segments import per_structure_matmul


def neighbor_pairs(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc,
    cutoff: float,
    *,
    full_list: bool = True,
    distances: bool = False,
    sort: bool = True,
) -> tuple[torch.Tensor, ...]:
    """All pairs closer than ``cutoff`` over all periodic images, on the positions' device.

    The one neighbour search of the package (network graph, Coulomb real-space pairs,
    reference potentials). vesin takes torch tensors on the CPU and on CUDA, so a list
    for a structure on the GPU is built there, with no copy to the host.

    Args:
        positions: (N, 3) Å, float; need not be wrapped into the cell (values only).
        cell: (3, 3) Å, rows are lattice vectors (ignored along non-periodic axes).
        pbc: three bools (a sequence, array or (3,) bool tensor).
        cutoff: Å, > 0. May exceed half the cell: every image within it is listed,
            including an atom's own images.
        full_list: list each pair as both i->j and j->i (True) or once (False).
        distances: also return the pair distances (E,) float64 Å (values only).
        sort: order the pairs (below). False keeps vesin's order, which on the CPU is a
            deterministic function of the input (its cell list) but not sorted; on a GPU
            it may vary between calls. Used for sums whose order only moves round-off.

    Returns:
        ``(i, j, shifts)``: int64 tensors (E,), (E,) and (E, 3) on the positions' device
        with ``|r_j - r_i + shifts @ cell| < cutoff`` for every edge, sorted by i, then j,
        then shift (deterministic on every device) when ``sort``; self pairs with zero
        shift are never listed. With ``distances``, ``(i, j, shifts, d)``.
    """
    if not (isinstance(cutoff, (int, float, np.integer, np.floating)) and cutoff > 0):
        raise ValueError(f"cutoff must be a positive number of Å, got {cutoff!r}")
    device = positions.device
    flags = [bool(p) for p in (pbc.tolist() if isinstance(pbc, torch.Tensor) else pbc)]
    if len(flags) != 3:
        raise ValueError(f"pbc must be three bools, got {pbc!r}")
    n = positions.shape[0]
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        out = (empty, empty, torch.zeros((0, 3), dtype=torch.int64, device=device))
        return out + ((torch.zeros(0, dtype=torch.float64, device=device),) if distances else ())
    points = positions.detach().to(torch.float64).contiguous()
    box = cell.detach().to(device=device, dtype=torch.float64).reshape(3, 3)
    if not any(flags):
        # vesin wants a box even when nothing is periodic; any box will do.
        box = torch.zeros((3, 3), dtype=torch.float64, device=device)
    _check_density(points, box, flags, float(cutoff))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=full_list)
    result = calculator.compute(points, box.contiguous(), flags, "ijSd" if distances else "ijS")
    i, j, shifts = (torch.as_tensor(x, device=device).to(torch.int64) for x in result[:3])
    out = (i, j, shifts)
    if distances:
        out = out + (torch.as_tensor(result[3], device=device).to(torch.float64),)
    if not sort:
        return out
    order = torch.argsort(_pair_keys(i, j, shifts, n))
    return tuple(x[order] for x in out)


def _pair_keys(i, j, shifts, n: int) -> torch.Tensor:
    """Distinct int64 keys ordering pairs by i, then j, then shift (deterministic on every
    device: vesin's own order depends on its threads). One sort instead of five."""
    if i.numel() == 0:
        return i
    low = shifts.min(dim=0).values
    span = shifts.max(dim=0).values - low + 1
    s0, s1, s2 = (int(x) for x in span.tolist())
    if n * n * s0 * s1 * s2 >= 2**62:  # cannot happen for sane inputs; keep exact anyway
        raise ValueError(f"too many atoms ({n}) or cell images for the pair ordering")
    code = ((shifts[:, 0] - low[0]) * s1 + (shifts[:, 1] - low[1])) * s2 + (shifts[:, 2] - low[2])
    return (i * n + j) * (s0 * s1 * s2) + code


#: Most neighbours per atom we list before suspecting wrong units (a 0.01 Å cell, Bohr for
#: Å...): dense liquids at 10 Å have ~200.
MAX_NEIGHBORS_PER_ATOM = 20_000
#: Largest extent / cutoff of a non-periodic direction (vesin's cell grid overflows near
#: 1e6 cells per axis and the process dies with SIGFPE).
MAX_EXTENT_IN_CUTOFFS = 100_000


def _check_density(points: torch.Tensor, box: torch.Tensor, flags, cutoff: float) -> None:
    """Refuse inputs that would make the neighbour search explode or crash.

    Raises:
        ValueError: more than ``MAX_NEIGHBORS_PER_ATOM`` expected neighbours per atom in a
            periodic cell, or a non-periodic extent over ``MAX_EXTENT_IN_CUTOFFS`` cutoffs.
    """
    n = points.shape[0]
    extent = (points.max(dim=0).values - points.min(dim=0).values).tolist()
    for axis, periodic in enumerate(flags):
        if not periodic and extent[axis] > MAX_EXTENT_IN_CUTOFFS * cutoff:
            raise ValueError(
                f"positions span {extent[axis]:.3g} Å along non-periodic axis {axis}, over "
                f"{MAX_EXTENT_IN_CUTOFFS} cutoffs ({cutoff} Å): check the units or split "
                "the structure"
            )
    if all(flags):
        volume = abs(float(torch.linalg.det(box.cpu())))
        expected = n / max(volume, 1e-300) * 4.0 / 3.0 * math.pi * cutoff**3
        if expected > MAX_NEIGHBORS_PER_ATOM:
            raise ValueError(
                f"cell volume {volume:.3g} Å^3 for {n} atoms gives ~{expected:.3g} neighbours "
                f"per atom within {cutoff} Å (limit {MAX_NEIGHBORS_PER_ATOM}): check the "
                "cell's units"
            )


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    *,
    full_list: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`neighbor_pairs` for numpy arrays (host): int64 arrays (E,), (E,), (E, 3)."""
    i, j, shifts = neighbor_pairs(
        torch.as_tensor(np.asarray(positions, dtype=np.float64)).reshape(-1, 3),
        torch.as_tensor(np.asarray(cell, dtype=np.float64)).reshape(3, 3),
        [bool(p) for p in np.asarray(pbc, dtype=bool).reshape(3)],
        cutoff,
        full_list=full_list,
    )
    return i.numpy(), j.numpy(), shifts.numpy()


def edge_vectors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    cell_shifts: torch.Tensor,
    batch: torch.Tensor,
) -> torch.Tensor:
    """Differentiable edge vectors r_ij = r_j - r_i + S_ij @ cell[batch_i].

    Args:
        positions: (N, 3) Å.
        cell: (B, 3, 3) Å.
        edge_index: (2, E) int64, rows (i, j).
        cell_shifts: (E, 3) integer-valued, same dtype as positions.
        batch: (N,) int64 structure index of each atom.

    Returns:
        (E, 3) Å.
    """
    i, j = edge_index[0], edge_index[1]
    # S_ij @ cell of the edge's structure, without gathering the cell per edge: the
    # backward of cell[batch[i]] accumulates E contributions into 9 B entries (195 ms
    # for 0.8 M edges on an H200 against 0.5 ms for the product; data/segments.py).
    shift = per_structure_matmul(cell_shifts, cell, batch.index_select(0, i))
    return positions.index_select(0, j) - positions.index_select(0, i) + shift
