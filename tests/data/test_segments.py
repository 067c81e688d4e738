"""Per-structure reductions: every path (one structure, dense one-hot, index_add) equals
the plain indexing expression, values and gradients, to float64 round-off."""

import pytest
import torch

from hybridpot.data.segments import (
    DENSE_MAX_SEGMENTS,
    gather_segments,
    per_structure_matmul,
    segment_sum,
)

# One structure, a few (one-hot products) and many (index_add).
SEGMENT_COUNTS = (1, 5, DENSE_MAX_SEGMENTS + 7)


def _index(m: int, b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, b, (m,), generator=g)
    index[:b] = torch.arange(b)  # every structure present (a batched graph has no gaps)
    return index[torch.randperm(m, generator=g)]  # unsorted on purpose


@pytest.mark.parametrize("b", SEGMENT_COUNTS)
def test_segment_sum_and_gather_match_indexing(b):
    m = 300
    index = _index(m, b, seed=b)
    values = torch.randn(m, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.zeros(b, 3, dtype=torch.float64).index_add(0, index, values)
    out = segment_sum(values, index, b)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn(b, 3, dtype=torch.float64)
    (g,) = torch.autograd.grad((out * w).sum(), values)
    torch.testing.assert_close(g, w[index], rtol=0, atol=0)

    per_structure = torch.randn(b, 2, dtype=torch.float64, requires_grad=True)
    gathered = gather_segments(per_structure, index)
    torch.testing.assert_close(gathered, per_structure[index], rtol=0, atol=0)
    u = torch.randn(m, 2, dtype=torch.float64)
    (g,) = torch.autograd.grad((gathered * u).sum(), per_structure)
    ref_g = torch.zeros(b, 2, dtype=torch.float64).index_add(0, index, u)
    torch.testing.assert_close(g, ref_g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("b", SEGMENT_COUNTS)
def test_per_structure_matmul_matches_einsum(b):
    m = 400
    index = _index(m, b, seed=10 + b)
    vectors = torch.randn(m, 3, dtype=torch.float64, requires_grad=True)
    matrices = torch.randn(b, 3, 3, dtype=torch.float64, requires_grad=True)
    ref = torch.einsum("mk,mkl->ml", vectors, matrices[index])
    out = per_structure_matmul(vectors, matrices, index)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn(m, 3, dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), (vectors, matrices))
    ref_grads = torch.autograd.grad((ref * w).sum(), (vectors, matrices))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_explicit_3x3_determinant_and_inverse_match_linalg():
    from hybridpot.data.segments import determinant3, inverse3

    g = torch.Generator().manual_seed(0)
    cells = torch.randn(7, 3, 3, dtype=torch.float64, generator=g) + 4 * torch.eye(3)
    cells.requires_grad_(True)
    torch.testing.assert_close(determinant3(cells), torch.linalg.det(cells), rtol=1e-13, atol=0)
    torch.testing.assert_close(inverse3(cells), torch.linalg.inv(cells), rtol=1e-12, atol=1e-14)
    w = torch.randn(7, 3, 3, dtype=torch.float64, generator=g)
    ours = torch.autograd.grad((inverse3(cells) * w).sum() + determinant3(cells).sum(), cells)
    ref = torch.autograd.grad(
        (torch.linalg.inv(cells) * w).sum() + torch.linalg.det(cells).sum(), cells
    )
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-11, atol=1e-13)
