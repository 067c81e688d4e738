"""hybridpot.derivatives: the one backward pass, the Voigt order (checked against ASE) and
where a dipole and a volume (stress) are defined."""

import ase.stress
import numpy as np
import torch

from hybridpot.derivatives import (
    apply_strain,
    cell_volume,
    energy_derivatives,
    has_dipole,
    has_volume,
    voigt,
    voigt_to_matrix,
)


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


def test_volume_and_stress_only_when_fully_periodic():
    pbc = [[False, False, False], [True, True, False], [True, False, False], [True] * 3]
    expected = [False, False, False, True]
    assert has_volume(torch.tensor(pbc)).tolist() == expected
    assert has_volume(np.array(pbc)).tolist() == expected
    cell = torch.eye(3, dtype=torch.float64).expand(4, 3, 3) * 2.0
    assert cell_volume(cell, torch.tensor(pbc)).tolist() == [0.0, 0.0, 0.0, 8.0]


def test_energy_derivatives_of_a_known_energy():
    """E_b = sum_i q_i |r_i|^2 + |cell_b|^2 (Frobenius): every derivative is analytic.

    With r' = r (1 + ε) and cell' = cell (1 + ε): dE/dε = sum_i q_i 2 r_i r_i^T +
    2 cell^T cell (symmetric, as the strain is symmetrised). Structure 1 is a molecule
    (volume 0): its stress is zero, its virial still given. Exact to round-off."""
    torch.manual_seed(0)
    dtype = torch.float64
    positions = torch.randn(5, 3, dtype=dtype, requires_grad=True)
    charges = torch.randn(5, dtype=dtype, requires_grad=True)
    unused = torch.randn(2, dtype=dtype, requires_grad=True)
    cell = torch.eye(3, dtype=dtype)[None].repeat(2, 1, 1) * 4.0 + 0.3 * torch.randn(2, 3, 3)
    batch = torch.tensor([0, 0, 0, 1, 1])
    pbc = torch.tensor([[True] * 3, [False] * 3])
    r, c, strain = apply_strain(positions, cell, batch)
    per_atom = charges * (r * r).sum(-1)
    energy = torch.zeros(2, dtype=dtype).index_add(0, batch, per_atom) + (c * c).sum((-1, -2))
    volume = cell_volume(cell, pbc)
    out = energy_derivatives(energy, positions, strain, volume, extra=(charges, unused))

    x = positions.detach()
    torch.testing.assert_close(out.forces, -2 * charges.detach()[:, None] * x)
    torch.testing.assert_close(out.extra[0], (x * x).sum(-1))
    torch.testing.assert_close(out.extra[1], torch.zeros(2, dtype=dtype))  # unused: zeros
    outer = 2 * charges.detach()[:, None, None] * x[:, :, None] * x[:, None, :]
    de = torch.zeros(2, 3, 3, dtype=dtype).index_add(0, batch, outer)
    de = de + 2 * cell.transpose(-1, -2) @ cell
    torch.testing.assert_close(out.virial, -de)
    torch.testing.assert_close(out.stress[0], de[0] / torch.linalg.det(cell[0]).abs())
    torch.testing.assert_close(out.stress[1], torch.zeros(3, 3, dtype=dtype))

    r2 = positions.detach().clone().requires_grad_(True)
    no_strain = energy_derivatives((charges.detach() * (r2 * r2).sum(-1)).sum(), r2)
    assert no_strain.virial is None and no_strain.stress is None and no_strain.extra == ()
