"""The analytic k-space backward pass (``mesh_potential``) equals generic autograd.

Forces, stress (strain moves positions and cell), dE/dq, second derivatives
(``create_graph=True``), a non-energy upstream gradient, slabs, float32, finite
differences of the Function itself, and the k-space filter cache.
"""

import numpy as np
import pytest
import torch

from hybridpot.derivatives import apply_strain
from hybridpot.electrostatics import Electrostatics
from hybridpot.electrostatics.mesh_potential import mesh_potential, mesh_potential_autograd
from hybridpot.testing import random_ionic_cell

PBC = torch.ones((1, 3), dtype=torch.bool)


def _cell(net_charge=1.5, seed=3, n=30):
    return random_ionic_cell(n, np.random.default_rng(seed), net_charge=net_charge)


def _derivatives(atoms, analytic, method, nodes=None, sigma_q=0.0, second=False):
    overrides = {} if nodes is None else {"interpolation_nodes": nodes}
    model = Electrostatics(
        sigma_q=sigma_q, method=method, accuracy=1e-4, analytic_kspace=analytic, **overrides
    )
    positions = torch.tensor(atoms.positions, requires_grad=True)
    cell = torch.tensor(atoms.cell.array)[None]
    charges = torch.tensor(atoms.get_initial_charges(), requires_grad=True)
    batch = torch.zeros(len(atoms), dtype=torch.int64)
    strained_positions, strained_cell, strain = apply_strain(positions, cell, batch)
    energy = model(strained_positions, strained_cell, PBC, charges, batch).sum()
    grads = torch.autograd.grad(energy, [positions, charges, strain], create_graph=second)
    out = {"energy": energy, "forces": -grads[0], "dE/dq": grads[1], "virial": grads[2]}
    if second:
        # A force-matching-like loss: its gradient needs d(forces)/d(positions, charges).
        loss = (grads[0] ** 2).sum() + (grads[1] ** 3).sum() + grads[2].square().sum()
        hess = torch.autograd.grad(loss, [positions, charges])
        out["d2/dr"], out["d2/dq"] = hess
    return {k: v.detach() for k, v in out.items()}


def _assert_same(a, b, rtol):
    for key in b:
        scale = float(b[key].abs().max())
        diff = float((a[key] - b[key]).abs().max())
        assert diff <= rtol * max(scale, 1e-300), f"{key}: {diff:.3g} vs scale {scale:.3g}"


@pytest.mark.parametrize(
    "method,nodes,sigma_q",
    [("pme", None, 0.0), ("pme", 4, 0.0), ("pme", 5, 0.7), ("p3m", None, 0.0), ("p3m", 3, 0.7)],
)
def test_analytic_equals_autograd_first_derivatives(method, nodes, sigma_q):
    atoms = _cell()
    fast = _derivatives(atoms, True, method, nodes, sigma_q)
    slow = _derivatives(atoms, False, method, nodes, sigma_q)
    _assert_same(fast, slow, 1e-12)


@pytest.mark.parametrize("method", ["pme", "p3m"])
def test_analytic_equals_autograd_second_derivatives(method):
    atoms = _cell(seed=4, n=20)
    fast = _derivatives(atoms, True, method, second=True)
    slow = _derivatives(atoms, False, method, second=True)
    _assert_same(fast, slow, 1e-11)


def test_weighted_per_atom_energies_use_the_general_backward():
    # An upstream gradient that is not a multiple of the charges (a weighted sum of
    # per-atom energies) takes the second-convolution branch.
    atoms = _cell(seed=5)
    results = []
    for analytic in (True, False):
        model = Electrostatics(sigma_q=0.0, accuracy=1e-4, analytic_kspace=analytic)
        positions = torch.tensor(atoms.positions, requires_grad=True)
        cell = torch.tensor(atoms.cell.array, requires_grad=True)
        charges = torch.tensor(atoms.get_initial_charges(), requires_grad=True)
        batch = torch.zeros(len(atoms), dtype=torch.int64)
        weights = torch.linspace(0.3, 2.0, len(atoms), dtype=torch.float64)
        energy = (model(positions, cell[None], PBC, charges, batch) * weights).sum()
        results.append(torch.autograd.grad(energy, [positions, cell, charges]))
    for fast, slow in zip(*results):
        assert torch.allclose(fast, slow, rtol=0, atol=1e-12 * float(slow.abs().max()))


def test_slab_analytic_equals_autograd():
    atoms = _cell(net_charge=0.0, seed=6)
    atoms.pbc = [True, True, False]
    atoms.cell[2] = [0.0, 0.0, 0.0]
    out = []
    for analytic in (True, False):
        model = Electrostatics(sigma_q=0.0, accuracy=1e-4, analytic_kspace=analytic)
        positions = torch.tensor(atoms.positions, requires_grad=True)
        cell = torch.tensor(atoms.cell.array)[None]
        charges = torch.tensor(atoms.get_initial_charges(), requires_grad=True)
        batch = torch.zeros(len(atoms), dtype=torch.int64)
        pbc = torch.tensor([[True, True, False]])
        energy = model(positions, cell, pbc, charges, batch).sum()
        out.append([energy.detach(), *torch.autograd.grad(energy, [positions, charges])])
    for fast, slow in zip(*out):
        assert torch.allclose(fast, slow, rtol=1e-12, atol=1e-12 * float(slow.abs().max()))


def test_float32_analytic_matches_float64():
    atoms = _cell(seed=7)
    forces = []
    for dtype in (torch.float32, torch.float64):
        model = Electrostatics(sigma_q=0.0, accuracy=1e-4)
        positions = torch.tensor(atoms.positions, dtype=dtype, requires_grad=True)
        cell = torch.tensor(atoms.cell.array, dtype=dtype)[None]
        charges = torch.tensor(atoms.get_initial_charges(), dtype=dtype)
        batch = torch.zeros(len(atoms), dtype=torch.int64)
        energy = model(positions, cell, PBC, charges, batch).sum()
        forces.append(-torch.autograd.grad(energy, positions)[0].double())
    rel = float((forces[0] - forces[1]).norm() / forces[1].norm())
    assert rel < 3e-5


@pytest.mark.parametrize("weights", ["Lagrange", "P3M"])
def test_mesh_potential_gradcheck(weights):
    # The custom Function against finite differences (first and second derivatives) in
    # its own inputs: mesh coordinates, charges and the k-space filter.
    from torchpme.lib.mesh_interpolator import MeshInterpolator

    nodes = 5 if weights == "Lagrange" else 4
    shape = (5, 6, 6)
    interpolator = MeshInterpolator(
        torch.eye(3, dtype=torch.float64),
        torch.tensor(shape),
        interpolation_nodes=nodes,
        method=weights,
    )
    rng = np.random.default_rng(8)
    # Keep the offsets away from the node switches (half-integers for odd p, integers
    # for even p), where the weights are only continuous.
    base = rng.integers(-3, 12, size=(3, 3)) + (0.0 if nodes % 2 else 0.5)
    scaled = torch.tensor(base + rng.uniform(-0.4, 0.4, (3, 3)), requires_grad=True)
    charges = torch.tensor(rng.normal(size=3), requires_grad=True)
    kfilter = torch.tensor(rng.uniform(0.1, 1.0, (5, 6, 4)), requires_grad=True)
    fn = interpolator._compute_1d_weights

    def f(s, q, k):
        return mesh_potential(s, q, k, fn, nodes, shape)

    assert torch.autograd.gradcheck(f, (scaled, charges, kfilter))
    assert torch.autograd.gradgradcheck(f, (scaled, charges, kfilter))
    # The forward value equals the plain-autograd version.
    ref = mesh_potential_autograd(scaled, charges, kfilter, fn, nodes, shape)
    assert torch.allclose(f(scaled, charges, kfilter), ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("method", ["pme", "p3m"])
def test_batched_filters_equal_torchpme_filters(method):
    """The batched k-space filters (one per cell) equal torch-pme's, cell by cell: PME on
    triclinic cells; P3M on axis-aligned cells (where torch-pme's influence function is
    right) and, on a triclinic cell, the same function of the lattice phases m_i / n_i
    (the phase per mesh step along a_i for any cell), which torch-pme gets wrong."""
    from torchpme.lib.kspace_filter import KSpaceFilter, P3MKSpaceFilter

    from hybridpot.electrostatics.batched import mesh_filters
    from hybridpot.electrostatics.plan import MeshGroup
    from hybridpot.electrostatics.potential import GaussianCoulombPotential

    rng = np.random.default_rng(3)
    ortho = torch.diag(torch.tensor([9.0, 10.0, 11.0], dtype=torch.float64))
    skew = torch.tensor(np.eye(3) * 9.0 + rng.normal(scale=0.8, size=(3, 3)))
    cells = torch.stack([ortho, skew]) if method == "p3m" else torch.stack([skew, skew.T])
    shape, nodes, smearing = (10, 12, 9), 5, (1.3, 1.7)
    group = MeshGroup(
        method,
        nodes,
        shape,
        torch.arange(2),
        torch.arange(2),
        torch.arange(2),
        torch.tensor(smearing, dtype=torch.float64),
    )
    batched = mesh_filters(group, cells)
    for g in range(2):
        potential = GaussianCoulombPotential(smearing=smearing[g], sigma_q=0.5)
        ns = torch.tensor(shape)
        if method == "pme":
            ref = KSpaceFilter(
                cells[g], ns, kernel=potential, fft_norm="backward", ifft_norm="forward"
            )._kfilter
        else:
            ref = P3MKSpaceFilter(
                ortho,
                ns,
                interpolation_nodes=nodes,
                kernel=potential,
                mode=0,
                differential_order=2,
                fft_norm="backward",
                ifft_norm="forward",
            )
            kernel_only = KSpaceFilter(
                cells[g], ns, kernel=potential, fft_norm="backward", ifft_norm="forward"
            )._kfilter
            # the influence function depends on the mesh indices only: torch-pme's on
            # the orthorhombic cell, times the kernel of this cell
            ortho_kernel = KSpaceFilter(
                ortho, ns, kernel=potential, fft_norm="backward", ifft_norm="forward"
            )._kfilter
            influence = torch.where(ortho_kernel == 0, 0.0, ref._kfilter / ortho_kernel)
            ref = influence * kernel_only
        torch.testing.assert_close(batched[g], ref, rtol=1e-12, atol=1e-12 * float(ref.abs().max()))


def test_analytic_kspace_flag_is_checked():
    with pytest.raises(TypeError, match="analytic_kspace must be True or False, got str"):
        Electrostatics(analytic_kspace="yes")


@pytest.mark.parametrize(
    "method,nodes", [("Lagrange", p) for p in range(3, 8)] + [("P3M", p) for p in range(2, 6)]
)
def test_horner_weights_equal_torchpme_weights(method, nodes):
    """The coefficient-matrix weights equal torch-pme's term-by-term polynomials to
    rounding, for real and (complex-step) derivative use."""
    from torchpme.lib.mesh_interpolator import MeshInterpolator

    from hybridpot.electrostatics.mesh import PolynomialWeights

    reference = MeshInterpolator(
        torch.eye(3, dtype=torch.float64),
        torch.ones(3, dtype=torch.int64),
        interpolation_nodes=nodes,
        method=method,
    )._compute_1d_weights
    weights = PolynomialWeights(method, nodes)
    x = torch.rand(500, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(nodes))
    x = x - 0.5
    torch.testing.assert_close(weights(x), reference(x), rtol=0, atol=1e-15)
    h = 1e-20
    derivative = weights(torch.complex(x, torch.full_like(x, h))).imag / h
    xr = x.clone().requires_grad_(True)
    (ref_derivative,) = torch.autograd.grad(reference(xr).sum(), xr)
    torch.testing.assert_close(derivative.sum(0), ref_derivative, rtol=0, atol=1e-13)
