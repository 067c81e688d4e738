"""hybridpot.derivatives: the Voigt order (checked against ASE) and where a dipole is defined."""

import ase.stress
import numpy as np
import torch

from hybridpot.derivatives import has_dipole, voigt, voigt_to_matrix


def test_voigt_order_is_ases():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(3, 3))
    m = m + m.T
    np.testing.assert_array_equal(voigt(m), ase.stress.full_3x3_to_voigt_6_stress(m))
    v = rng.normal(size=6)
    np.testing.assert_array_equal(voigt_to_matrix(v), ase.stress.voigt_6_to_full_3x3_stress(v))


def test_voigt_torch_batched_and_round_trip():
    m = torch.randn(4, 3, 3, dtype=torch.float64)
    m = m + m.transpose(-1, -2)
    assert voigt(m).shape == (4, 6)
    torch.testing.assert_close(voigt_to_matrix(voigt(m)), m, rtol=0, atol=0)
    np.testing.assert_array_equal(voigt(m).numpy(), voigt(m.numpy()))


def test_dipole_defined_only_without_periodic_axes():
    pbc = [[False, False, False], [True, True, False], [True, False, False], [True] * 3]
    expected = [True, False, False, False]
    assert has_dipole(torch.tensor(pbc)).tolist() == expected
    assert has_dipole(np.array(pbc)).tolist() == expected
    assert bool(has_dipole(np.array(pbc[0]))) and not bool(has_dipole(np.array(pbc[1])))
