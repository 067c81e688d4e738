"""Per-structure reductions and products without atomic accumulation on a few addresses.

A batched graph maps every atom (or edge) to its structure with an index ``batch``. The
obvious tensor code for per-structure quantities, ``values.index_add(0, batch, x)`` or
``cell[batch]``, makes the GPU accumulate millions of contributions into the same few
entries (the B sums, or the 9 B entries of the cells, in the backward of the gather):
atomic additions on one address serialise. Measured on an H200 for 828,730 edges of one
structure, the backward of ``shifts @ cell[batch[i]]`` took 195 ms, the same product with
the one cell 0.53 ms.

For a few structures the same sums are dense matrix products with a one-hot matrix
(B <= ``DENSE_MAX_SEGMENTS``): cuBLAS and the CPU BLAS reduce over the long axis in
registers, and the backward is a matrix product too. With many structures the
contributions spread over many addresses and ``index_add`` is fast again, so it is used.
Both paths give the same numbers up to summation order (float64 tests: 1e-12).
"""

from __future__ import annotations

import torch

#: Largest number of structures reduced with one-hot matrix products (memory ~ M x B).
DENSE_MAX_SEGMENTS = 64


def _one_hot(index: torch.Tensor, num_segments: int, dtype: torch.dtype) -> torch.Tensor:
    """(M, B) one-hot matrix of ``index`` (no gradient)."""
    segments = torch.arange(num_segments, device=index.device)
    return (index[:, None] == segments[None, :]).to(dtype)


def segment_sum(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum rows of ``values`` per segment: out[b] = sum over m with index[m] == b.

    Args:
        values: (M, ...) any float dtype.
        index: (M,) int64 segment (structure) of each row, in [0, num_segments).
        num_segments: B.

    Returns:
        (B, ...) like ``values``; differentiable w.r.t. ``values``.
    """
    if num_segments == 1:
        return values.sum(dim=0, keepdim=True)
    if num_segments <= DENSE_MAX_SEGMENTS:
        flat = values.reshape(values.shape[0], -1)
        out = _one_hot(index, num_segments, values.dtype).T @ flat
        return out.reshape(num_segments, *values.shape[1:])
    out = torch.zeros((num_segments, *values.shape[1:]), dtype=values.dtype, device=values.device)
    return out.index_add(0, index, values)


def gather_segments(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] (per-structure values broadcast to atoms or edges).

    Args:
        values: (B, ...).
        index: (M,) int64 in [0, B).

    Returns:
        (M, ...); the backward w.r.t. ``values`` is :func:`segment_sum` (no atomics on
        few addresses).
    """
    num_segments = values.shape[0]
    if num_segments == 1:
        return values.expand(index.shape[0], *values.shape[1:])
    if num_segments <= DENSE_MAX_SEGMENTS:
        flat = values.reshape(num_segments, -1)
        out = _one_hot(index, num_segments, values.dtype) @ flat
        return out.reshape(index.shape[0], *values.shape[1:])
    return values.index_select(0, index)


def per_structure_matmul(
    vectors: torch.Tensor, matrices: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """Row vectors times their structure's matrix: out[m] = vectors[m] @ matrices[index[m]].

    Args:
        vectors: (M, 3).
        matrices: (B, 3, 3).
        index: (M,) int64 structure of each row.

    Returns:
        (M, 3), differentiable w.r.t. both inputs; the gradient w.r.t. ``matrices`` is
        a dense product (B <= ``DENSE_MAX_SEGMENTS``) or spread over many addresses.
    """
    num_segments = matrices.shape[0]
    if num_segments == 1:
        return vectors @ matrices[0]
    if num_segments <= DENSE_MAX_SEGMENTS:
        # All B products at once, (M, 3) @ (3, B*3), then keep each row's own structure.
        stacked = matrices.permute(1, 0, 2).reshape(3, num_segments * 3)
        products = (vectors @ stacked).reshape(-1, num_segments, 3)
        mask = _one_hot(index, num_segments, vectors.dtype)
        return (products * mask[:, :, None]).sum(dim=1)
    return torch.einsum("mk,mkl->ml", vectors, matrices.index_select(0, index))


def determinant3(matrices: torch.Tensor) -> torch.Tensor:
    """(B,) det of (B, 3, 3) matrices as the triple product a . (b x c).

    Explicit, differentiable (also twice) and free of the library LU factorisation,
    whose error checks synchronise with the host on a GPU.
    """
    a, b, c = matrices[..., 0, :], matrices[..., 1, :], matrices[..., 2, :]
    return (a * torch.linalg.cross(b, c, dim=-1)).sum(-1)


def inverse3(matrices: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) inverses of (B, 3, 3) nonsingular matrices (adjugate / determinant).

    For a cell with rows a, b, c the columns of the inverse are (b x c, c x a, a x b)
    divided by a . (b x c). Singular input gives inf/NaN: callers check cells first.
    """
    a, b, c = matrices[..., 0, :], matrices[..., 1, :], matrices[..., 2, :]
    bc = torch.linalg.cross(b, c, dim=-1)
    ca = torch.linalg.cross(c, a, dim=-1)
    ab = torch.linalg.cross(a, b, dim=-1)
    det = (a * bc).sum(-1)
    return torch.stack([bc, ca, ab], dim=-1) / det[..., None, None]
