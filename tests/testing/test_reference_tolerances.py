"""The shared tolerance table: lookup by any dtype spelling, and sane ordering."""

import numpy as np
import pytest
import torch

from hybridpot.testing import Tolerances, tolerances


@pytest.mark.parametrize(
    "dtype, name",
    [
        (torch.float64, "float64"),
        (np.float64, "float64"),
        ("float32", "float32"),
        (np.dtype("float32"), "float32"),
        (torch.float32, "float32"),
    ],
)
def test_lookup(dtype, name):
    row = tolerances(dtype)
    assert isinstance(row, Tolerances)
    assert row.eps == np.finfo(name).eps


def test_float32_is_never_stricter_than_float64():
    f64, f32 = tolerances(torch.float64), tolerances(torch.float32)
    for field in ("exact", "ewald", "pme", "reference_energy", "fd_step", "fd"):
        assert getattr(f32, field) >= getattr(f64, field), field
    # Every tolerance sits above what rounding alone produces.
    for row in (f64, f32):
        assert row.exact > 10 * row.eps and row.fd > row.eps / row.fd_step


def test_unknown_dtype():
    with pytest.raises(TypeError, match="dtype: expected one of float64, float32.*int64"):
        tolerances(torch.int64)
    with pytest.raises(TypeError, match="dtype: expected one of float64, float32"):
        tolerances(np.float16)
