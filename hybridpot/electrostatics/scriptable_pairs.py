"""Brute-force periodic pair search in TorchScript (the exported model's Coulomb pairs).

The exported model cannot call vesin on the host: it lists the real-space Coulomb pairs
itself, comparing every atom with every atom in every periodic image that can reach the
cutoff, in passes of ``PAIR_SEARCH_ENTRIES`` (atom, atom, image) triples. O(N^2 x images):
fine up to a few thousand atoms. The pairs are the same set vesin lists (a full list
instead of a half list: each pair appears as (i, j, S) and (j, i, -S)).
"""

# TorchScript compiles typing.List/Tuple.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import math
from typing import List, Tuple

import torch

#: (atom, atom, image) triples compared at once (memory: ~32 bytes each).
PAIR_SEARCH_ENTRIES = 2**21


def inverse3(m: torch.Tensor) -> torch.Tensor:
    """(3, 3) inverse by the adjugate (as ``data.segments.inverse3``)."""
    a, b, c = m[0], m[1], m[2]
    bc = torch.linalg.cross(b, c, dim=-1)
    ca = torch.linalg.cross(c, a, dim=-1)
    ab = torch.linalg.cross(a, b, dim=-1)
    det = (a * bc).sum(-1)
    return torch.stack([bc, ca, ab], dim=-1) / det


def determinant3(m: torch.Tensor) -> torch.Tensor:
    """det of a (3, 3) matrix as the triple product (as ``data.segments.determinant3``)."""
    return (m[0] * torch.linalg.cross(m[1], m[2], dim=-1)).sum(-1)


def periodic_pairs(
    points: torch.Tensor,
    box: torch.Tensor,
    periodic: List[bool],
    cutoff: float,
    entries: int = PAIR_SEARCH_ENTRIES,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ordered pair (i, j, S) with |r_j - r_i + S @ box| < cutoff, i != j or
    S != 0 (a full list), by brute force over the images that can reach the cutoff.

    Args:
        points: (N, 3) float64 Å, values only. box: (3, 3) float64 Å.
        periodic: three bools. cutoff: Å. entries: (atom, atom, image) triples
        compared per pass (memory).

    Returns:
        i (P,), j (P,) int64 and the integer shifts (P, 3) float64.
    """
    n = points.shape[0]
    inverse = inverse3(box)
    flags = torch.tensor(periodic, device=points.device)
    # Wrap into the cell along the periodic axes; remember by how many cells.
    wraps = torch.where(flags, torch.floor(points @ inverse), torch.zeros_like(points))
    wrapped = points - wraps @ box
    reach: List[int] = []
    # Wrapped fractional coordinates differ by |df| < 1 along each axis, and a pair is
    # at least spacing * |df + S| apart (spacing: distance between lattice planes), so
    # |S| < cutoff / spacing + 1, i.e. |S| <= ceil(cutoff / spacing) (+1e-6: round-off).
    for a in range(3):
        if periodic[a]:
            spacing = 1.0 / float(torch.linalg.norm(inverse[:, a]))
            reach.append(int(math.ceil(cutoff / spacing + 1e-6)))
        else:
            reach.append(0)
    # every image shift S' within reach, (M, 3), with the zero shift at index `zero`
    ranges = [
        torch.arange(-reach[a], reach[a] + 1, dtype=points.dtype, device=points.device)
        for a in range(3)
    ]
    grids = torch.meshgrid(ranges, indexing="ij")
    shifts = torch.stack([grids[0].reshape(-1), grids[1].reshape(-1), grids[2].reshape(-1)], dim=1)
    zero = (shifts.shape[0] - 1) // 2
    offsets = shifts @ box
    images = shifts.shape[0]
    # rows of atoms per pass so that a pass holds ~ search_entries (i, j, S) triples
    rows_per_pass = max(1, entries // max(n * images, 1))
    found_i: List[torch.Tensor] = []
    found_j: List[torch.Tensor] = []
    found_s: List[torch.Tensor] = []
    cutoff2 = cutoff * cutoff
    for start in range(0, n, rows_per_pass):
        rows = wrapped[start : start + rows_per_pass]
        vectors = (wrapped[None, :, None, :] - rows[:, None, None, :]) + offsets[None, None]
        close = (vectors * vectors).sum(-1) < cutoff2  # (rows, N, M)
        local = torch.arange(rows.shape[0], device=points.device)
        close[local, local + start, zero] = False  # an atom is not its own neighbour
        hits = torch.nonzero(close)
        if hits.shape[0] > 0:
            i = hits[:, 0] + start
            j = hits[:, 1]
            found_i.append(i)
            found_j.append(j)
            # r_j - r_i + S @ box with the unwrapped positions
            found_s.append(shifts[hits[:, 2]] - wraps[j] + wraps[i])
    if len(found_i) == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=points.device)
        return empty, empty, torch.zeros((0, 3), dtype=points.dtype, device=points.device)
    return torch.cat(found_i), torch.cat(found_j), torch.cat(found_s)
