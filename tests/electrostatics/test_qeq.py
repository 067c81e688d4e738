"""Charge equilibration: the matrix-free CG solve against a dense KKT solve, the group
constraints, and the implicit (adjoint) gradients against finite differences.

All in float64. The dense reference builds the N x N Coulomb matrix from energies of the
same Coulomb module (so 1e-8 tests the solver, not the PME error) and, separately, from
the independent NumPy Ewald / direct sums (agreement to the PME accuracy asked, 1e-8).
"""

import numpy as np
import pytest
import torch

from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.electrostatics import Electrostatics, equilibrate_charges
from hybridpot.electrostatics.qeq import self_hardness
from hybridpot.testing import direct_sum, ewald_sum
from hybridpot.testing.qeq_reference import dense_qeq, matrix_from_energy, matrix_from_potential
from hybridpot.testing.structures import random_structure

SIGMA_Q = 0.8
TIGHT = 1e-12  # CG relative residual for the comparisons (far below the 1e-8 asked)

CASES = {
    "molecule": dict(seed=1, n=7, pbc=(False, False, False)),
    "bulk": dict(seed=2, n=8, scale=5.0),
    "charged": dict(seed=3, n=7, charge=1.0, scale=5.0),
    "slab": dict(seed=4, n=8, pbc=(True, True, False)),
}


def _electrostatics():
    return Electrostatics(sigma_q=SIGMA_Q, accuracy=1e-8)


def _inputs(graph, seed):
    gen = torch.Generator().manual_seed(seed)
    n = graph.num_nodes
    chi = torch.randn(n, generator=gen, dtype=torch.float64) * 2.0
    hardness = torch.rand(n, generator=gen, dtype=torch.float64) * 4.0 + 0.5
    return chi, hardness


def _solve(graph, chi, hardness, es, groups=None, charges=None, **kwargs):
    groups = graph.batch if groups is None else groups
    charges = graph.total_charge if charges is None else charges
    return equilibrate_charges(
        chi,
        hardness,
        graph.positions,
        graph.cell,
        graph.pbc,
        graph.batch,
        groups,
        charges,
        es,
        **kwargs,
    )


def _module_matrix(graph, es):
    """C from the same Coulomb module's energies (polarisation identity)."""
    plan = es.plan(graph.positions, graph.cell, graph.pbc, graph.batch)

    def energy(q):
        charges = torch.as_tensor(q, dtype=torch.float64)
        energies = es(graph.positions, graph.cell, graph.pbc, charges, graph.batch, plan=plan)
        return float(energies.sum())

    return matrix_from_energy(energy, graph.num_nodes)


def _graph(name):
    return graph_from_atoms(random_structure(**CASES[name]), 3.0)


@pytest.mark.parametrize("name", CASES)
def test_charges_equal_dense_solve(name):
    graph = _graph(name)
    es = _electrostatics()
    chi, hardness = _inputs(graph, 7)
    q = _solve(graph, chi, hardness, es, tolerance=TIGHT).detach().numpy()
    reference, _ = dense_qeq(
        chi.numpy(),
        hardness.numpy() + self_hardness(SIGMA_Q),
        _module_matrix(graph, es),
        graph.batch.numpy(),
        graph.total_charge.numpy(),
    )
    np.testing.assert_allclose(q, reference, rtol=0, atol=1e-8 * max(np.abs(reference).max(), 1))
    np.testing.assert_allclose(q.sum(), graph.total_charge.item(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["molecule", "charged"])
def test_charges_equal_independent_reference(name):
    """The Coulomb matrix from the NumPy Ewald / direct sum (no torch, no PME)."""
    atoms = random_structure(**CASES[name])
    graph = graph_from_atoms(atoms, 3.0)
    chi, hardness = _inputs(graph, 8)
    q = _solve(graph, chi, hardness, _electrostatics(), tolerance=TIGHT).detach().numpy()
    if atoms.pbc.any():
        potential = lambda c: ewald_sum(atoms.positions, c, atoms.cell.array, sigma_q=SIGMA_Q)[  # noqa: E731
            "potential"
        ]
    else:
        potential = lambda c: direct_sum(atoms.positions, c, sigma_q=SIGMA_Q)["potential"]  # noqa: E731
    matrix = matrix_from_potential(potential, len(atoms))
    reference, _ = dense_qeq(
        chi.numpy(),
        hardness.numpy() + self_hardness(SIGMA_Q),
        matrix,
        np.zeros(len(atoms), dtype=int),
        [atoms.info["charge"]],
    )
    # PME at accuracy 1e-8: the charges agree to about that.
    np.testing.assert_allclose(q, reference, rtol=0, atol=1e-6 * np.abs(reference).max())


@pytest.mark.slow  # ~60 s on a shared 2-core machine (the dense matrix: 253 energies)
def test_batched_mixture_with_fragments_equals_dense_solve():
    """Molecule + charged bulk + slab in one batch, the bulk split into two fragments with
    their own charges: one CG solve for all, equal to the dense KKT solve, group sums exact."""
    graph = batch_graphs([_graph("molecule"), _graph("charged"), _graph("slab")])
    es = _electrostatics()
    chi, hardness = _inputs(graph, 9)
    # Groups: molecule 0; charged cell split into groups 1 and 2; slab 3.
    batch = graph.batch.clone()
    groups = batch.clone()
    bulk = torch.nonzero(batch == 1).flatten()
    groups[bulk[: len(bulk) // 2]] = 1
    groups[bulk[len(bulk) // 2 :]] = 2
    groups[batch == 2] = 3
    group_charge = torch.tensor([0.5, 1.5, -0.5, -1.0], dtype=torch.float64)
    stats = {}
    q = _solve(graph, chi, hardness, es, groups, group_charge, tolerance=TIGHT, stats=stats)
    q = q.detach().numpy()
    assert len(stats["iterations"]) == 1  # one solve for the whole batch
    reference, mu = dense_qeq(
        chi.numpy(),
        hardness.numpy() + self_hardness(SIGMA_Q),
        _module_matrix(graph, es),
        groups.numpy(),
        group_charge.numpy(),
    )
    np.testing.assert_allclose(q, reference, rtol=0, atol=1e-8 * np.abs(reference).max())
    sums = np.bincount(groups.numpy(), weights=q)
    np.testing.assert_allclose(sums, group_charge.numpy(), rtol=0, atol=1e-12)
    # The chemical potentials differ between groups (the constraints are really active).
    assert np.ptp(mu) > 1e-3


def _scalar_of_charges(q):
    """A nonlinear scalar of the charges, so dL/dq is not constant per group."""
    weights = torch.linspace(-1.0, 2.0, q.shape[0], dtype=q.dtype)
    return (weights * q).sum() + (q**3).sum()


def _tight_scalar(graph, es, chi, hardness, positions, cell):
    """A scalar of the charges solved at the tight tolerance (for gradient checks)."""
    q = equilibrate_charges(
        chi,
        hardness,
        positions,
        cell,
        graph.pbc,
        graph.batch,
        graph.batch,
        graph.total_charge,
        es,
        tolerance=TIGHT,
    )
    return _scalar_of_charges(q)


# Periodic cases: 1-3 min each on a shared 2-core machine (every finite difference of
# the cell retunes and replans the mesh), hence slow; the molecule runs by default.
@pytest.mark.parametrize(
    "name",
    [n if n == "molecule" else pytest.param(n, marks=pytest.mark.slow) for n in CASES],
)
def test_implicit_gradient_matches_finite_differences(name):
    """dL(q*)/d(chi, J, positions, cell) by the adjoint solve, against central differences
    (torch.autograd.gradcheck, float64)."""
    graph = _graph(name)
    es = _electrostatics()
    chi, hardness = _inputs(graph, 10)
    periodic = bool(graph.pbc.any())

    def loss(chi, hardness, positions, cell):
        return _tight_scalar(graph, es, chi, hardness, positions, cell)

    inputs = [
        chi.clone().requires_grad_(),
        hardness.clone().requires_grad_(),
        graph.positions.clone().requires_grad_(),
        graph.cell.clone().requires_grad_(periodic),
    ]
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["molecule", pytest.param("bulk", marks=pytest.mark.slow)])
def test_second_derivatives_match_finite_differences(name):
    """The backward pass is differentiable (training on forces): gradgradcheck."""
    graph = graph_from_atoms(random_structure(**{**CASES[name], "n": 4}), 3.0)
    es = _electrostatics()
    chi, hardness = _inputs(graph, 11)

    def loss(chi, hardness, positions):
        return _tight_scalar(graph, es, chi, hardness, positions, graph.cell)

    inputs = [
        chi.clone().requires_grad_(),
        hardness.clone().requires_grad_(),
        graph.positions.clone().requires_grad_(),
    ]
    assert torch.autograd.gradgradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_energy_gradient_needs_no_adjoint_iteration():
    """At the minimum dE_q/dq is constant per group, so the adjoint solve of the energy's
    own gradient stops before its first iteration (forces cost no extra solve)."""
    graph = _graph("bulk")
    es = _electrostatics()
    chi, hardness = _inputs(graph, 12)
    positions = graph.positions.clone().requires_grad_()
    stats = {}
    q = equilibrate_charges(
        chi,
        hardness,
        positions,
        graph.cell,
        graph.pbc,
        graph.batch,
        graph.batch,
        graph.total_charge,
        es,
        tolerance=1e-8,
        stats=stats,
    )
    energy = (chi * q + 0.5 * (hardness + self_hardness(SIGMA_Q)) * q * q).sum()
    energy = energy + es(positions, graph.cell, graph.pbc, q, graph.batch).sum()
    energy.backward()
    assert stats["iterations"][0] > 3
    assert stats["iterations"][1] == 0


def test_errors_name_the_problem():
    graph = _graph("molecule")
    chi, hardness = _inputs(graph, 13)
    es = _electrostatics()
    with pytest.raises(ValueError, match="hardness must be > 0"):
        _solve(graph, chi, -hardness, es)
    with pytest.raises(ValueError, match="sigma_q > 0"):
        _solve(graph, chi, hardness, Electrostatics(sigma_q=0.0))
    with pytest.raises(ValueError, match=r"charge groups \[1\] have no atoms"):
        _solve(graph, chi, hardness, es, charges=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="group_index values must be in"):
        _solve(graph, chi, hardness, es, groups=graph.batch + 3)
    with pytest.raises(ValueError, match="electronegativity must be a"):
        _solve(graph, chi[:-1], hardness, es)
    with pytest.raises(ValueError, match="qeq_tolerance"):
        _solve(graph, chi, hardness, es, tolerance=2.0)
    with pytest.raises(RuntimeError, match="did not converge"):
        _solve(graph, chi, hardness, es, tolerance=1e-12, max_iterations=1)
