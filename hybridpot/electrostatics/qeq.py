"""Charge equilibration (Qeq), matrix-free on the Coulomb module, with implicit gradients.

Given per-atom electronegativities chi_i (eV/e) and hardnesses J_i (eV/e², > 0), the
charges minimise

    E_q(q) = sum_i chi_i q_i + (1/2) sum_i (J_i + J_self) q_i^2 + E_coul(q; R, cell)
    subject to  sum_{i in g} q_i = Q_g  for every charge group g,

with J_self = k_e / (sqrt(pi) sigma_q) the self-energy of a Gaussian charge of width
sigma_q (the limit r -> 0 of the pair kernel k_e erf(r / 2 sigma_q) / r; E_coul, as
computed by :class:`~.module.Electrostatics`, leaves it out). E_coul is a quadratic form,
E_coul = (1/2) q^T C q, so its gradient phi = C q is the electrostatic potential that the
Coulomb module already computes, and the stationarity (KKT) conditions are

    A q = -chi + P mu,   P^T q = Q,     A = diag(J + J_self) + C,

with P the (N, G) indicator of the groups and mu (G,) the groups' chemical potentials.
A is symmetric positive definite when J > 0 (C + J_self is the Coulomb energy of a smooth
charge density, >= 0), so the solution is unique. Solved without ever forming the N x N
matrix C: :func:`projected_cg` is conjugate gradients on the subspace P^T q = Q, one
matrix-vector product (one Coulomb evaluation) per iteration, Jacobi-preconditioned.

Derivatives, by the implicit function theorem, not by unrolling the iterations: with
upstream gradient g = dL/dq and the adjoint lambda solving A lambda = g - P nu,
P^T lambda = 0 (the same constrained solve, A being symmetric),

    dL/dchi = -lambda,   dL/dJ = -lambda * q,
    dL/dR   = -d/dR [lambda^T C(R, cell) q]        (lambda, q held fixed),

the last by autograd of the bilinear form lambda^T C q = [E_coul(q + lambda) -
E_coul(q - lambda)] / 2. The backward pass is itself built from differentiable operations
(the adjoint solve calls the same autograd Function), so second derivatives (training on
forces) are exact too.
"""

from __future__ import annotations

import math

import torch

from .. import hyperparameters as hp
from ..data.segments import gather_segments, segment_sum
from ..keys import COULOMB_CONSTANT


def self_hardness(sigma_q: float) -> float:
    """J_self = k_e / (sqrt(pi) sigma_q), eV/e²: a Gaussian charge's own energy is
    (1/2) J_self q²."""
    if not sigma_q > 0:
        raise ValueError(
            f"charge equilibration needs Gaussian charges, sigma_q > 0 Å, got {sigma_q!r} "
            "(a point charge's self-energy is infinite)"
        )
    return COULOMB_CONSTANT / (math.sqrt(math.pi) * sigma_q)


class CoulombOperator:
    """The Coulomb matrix C of a batch as an operator: phi = C q and its R-derivatives.

    Holds what does not change during a solve (the module, its plan, pbc, structure index
    and charge groups); positions and cell are passed to each call so that they can carry
    gradients.

    Args:
        electrostatics: an :class:`~.module.Electrostatics` with ``sigma_q`` > 0.
        plan: its :class:`~.plan.CoulombPlan` for these positions.
        pbc: (B, 3) bool.
        batch: (N,) int64 structure index.
        group_index: (N,) int64 charge group of each atom (global over the batch).
        num_groups: G.
    """

    def __init__(self, electrostatics, plan, pbc, batch, group_index, num_groups: int, stats=None):
        self.electrostatics = electrostatics
        self.plan = plan
        self.pbc = pbc
        self.batch = batch
        self.group_index = group_index
        self.num_groups = num_groups
        self.self_hardness = self_hardness(electrostatics.sigma_q)
        #: a dict counting Coulomb evaluations (``"evaluations"``; each one real-space
        #: and one mesh pass with its backward) and CG iterations, or None.
        self.stats = stats

    def energies(self, q, positions, cell, *, create_graph: bool = False) -> torch.Tensor:
        """(N,) eV per-atom E_coul of charges ``q`` (differentiable)."""
        if self.stats is not None:
            self.stats["evaluations"] = self.stats.get("evaluations", 0) + 1
        return self.electrostatics(
            positions,
            cell,
            self.pbc,
            q,
            self.batch,
            plan=self.plan,
            proportional_upstream=not create_graph,
            create_graph=create_graph,
        )

    def potential(self, q, positions, cell) -> torch.Tensor:
        """(N,) eV/e, phi = C q = dE_coul/dq (no graph: a matrix-vector product)."""
        with torch.enable_grad():
            leaf = q.detach().requires_grad_(True)
            energy = self.energies(leaf, positions.detach(), cell.detach()).sum()
            (phi,) = torch.autograd.grad(energy, leaf)
        return phi

    def bilinear(self, x, y, positions, cell, *, create_graph: bool) -> torch.Tensor:
        """Scalar x^T C(R, cell) y = [E_coul(x + y) - E_coul(x - y)] / 2 (polarisation of
        the quadratic form E_coul = q^T C q / 2), differentiable w.r.t. positions, cell,
        x and y."""
        plus = self.energies(x + y, positions, cell, create_graph=create_graph).sum()
        minus = self.energies(x - y, positions, cell, create_graph=create_graph).sum()
        return 0.5 * (plus - minus)


def _group_mean(values, group_index, num_groups, weights):
    """(G,) weighted mean per group, sum_g w v / sum_g w."""
    return segment_sum(values * weights, group_index, num_groups) / segment_sum(
        weights, group_index, num_groups
    )


def projected_cg(
    matvec,
    rhs: torch.Tensor,
    group_charge: torch.Tensor,
    diagonal: torch.Tensor,
    group_index: torch.Tensor,
    num_groups: int,
    *,
    tolerance: float,
    max_iterations: int,
) -> tuple[torch.Tensor, int]:
    """Solve A x = rhs - P mu, P^T x = group_charge by projected preconditioned CG.

    Conjugate gradients restricted to the affine subspace of the constraints (Gould,
    Hribar & Nocedal, SIAM J. Sci. Comput. 23, 1376 (2001)): the start x0 satisfies the
    constraints and every search direction sums to zero over each group. The
    preconditioner M = diag(A) enters through the constrained projection
    z = M^-1 (r - P nu), nu_g the 1/M-weighted mean of r over group g (P^T z = 0), and
    the residual itself is replaced by r - P nu at every step.

    Stops when the KKT residual ||r - P mean_g(r)|| (r = A x - rhs; the best multipliers
    mu are the group means) is at most ``tolerance`` times ||A x0 - rhs||. Each iteration
    reads one scalar on the host for that test.

    Args:
        matvec: v (N,) -> A v (N,).
        rhs: (N,) right-hand side.
        group_charge: (G,) the sums the solution must have per group.
        diagonal: (N,) positive diagonal of A (the Jacobi preconditioner).
        group_index: (N,) int64 group of each atom; every group must have atoms.
        num_groups: G.
        tolerance: relative residual, in (0, 1).
        max_iterations: at most this many matrix-vector products after the first.

    Returns:
        (x (N,), number of iterations).

    Raises:
        RuntimeError: not converged within ``max_iterations``.
    """
    inverse = 1.0 / diagonal

    def project(r):
        """(r - P nu, M^-1 (r - P nu)): nu_g the 1/M-weighted mean of r over group g, so
        that the second sums to zero over every group."""
        nu = _group_mean(r, group_index, num_groups, inverse)
        r = r - gather_segments(nu, group_index)
        return r, inverse * r

    def kkt_residual(r):
        ones = torch.ones_like(r)
        return r - gather_segments(_group_mean(r, group_index, num_groups, ones), group_index)

    def feasible(x):
        # Spread each group's missing charge in proportion to 1/diag (the M-projection).
        missing = group_charge - segment_sum(x, group_index, num_groups)
        share = missing / segment_sum(inverse, group_index, num_groups)
        return x + inverse * gather_segments(share, group_index)

    x = feasible(torch.zeros_like(rhs))
    r = matvec(x) - rhs
    limit = tolerance * torch.linalg.norm(r)
    # The residual is kept projected (r - P nu: Gould et al.'s "residual update"): the
    # part of r in the range of P (the groups' chemical potentials) does not affect the
    # iterates but, left in, swamps the small projected part in round-off and CG stalls
    # then diverges near convergence.
    r, z = project(r)
    p = -z
    rz = torch.dot(r, z)
    iterations = 0
    while bool(torch.linalg.norm(kkt_residual(r)) > limit):
        if iterations >= max_iterations:
            raise RuntimeError(
                f"charge equilibration did not converge to qeq_tolerance {tolerance:g} in "
                f"{max_iterations} iterations (relative residual "
                f"{float(torch.linalg.norm(kkt_residual(r)) / (limit / tolerance)):.3g}); "
                "check that the hardnesses are positive and the geometry is sane"
            )
        ap = matvec(p)
        alpha = rz / torch.dot(p, ap)
        x = x + alpha * p
        r, z = project(r + alpha * ap)
        rz_new = torch.dot(r, z)
        p = -z + (rz_new / rz) * p
        rz = rz_new
        iterations += 1
    # Round-off may have moved the group sums by ~1e-16 per step: put them back exactly.
    return feasible(x), iterations


class _ConstrainedSolve(torch.autograd.Function):
    """x = argmin (1/2) x^T A x - rhs^T x subject to P^T x = c, with
    A = diag(hardness + J_self) + C(positions, cell); differentiable w.r.t. rhs,
    hardness, positions and cell by one adjoint solve (module docstring)."""

    @staticmethod
    def forward(ctx, rhs, hardness, positions, cell, group_charge, operator, settings):
        tolerance, max_iterations = settings
        diagonal = hardness + operator.self_hardness
        pos, box = positions.detach(), cell.detach()

        def matvec(v):
            return diagonal * v + operator.potential(v, pos, box)

        x, iterations = projected_cg(
            matvec,
            rhs.detach(),
            group_charge.detach(),
            diagonal.detach(),
            operator.group_index,
            operator.num_groups,
            tolerance=tolerance,
            max_iterations=max_iterations,
        )
        if operator.stats is not None:
            operator.stats.setdefault("iterations", []).append(iterations)
        ctx.operator, ctx.settings = operator, settings
        ctx.save_for_backward(hardness, positions, cell, x)
        return x

    @staticmethod
    def backward(ctx, grad):
        hardness, positions, cell, x = ctx.saved_tensors
        operator = ctx.operator
        create_graph = torch.is_grad_enabled()
        zeros = torch.zeros(operator.num_groups, dtype=grad.dtype, device=grad.device)
        # The adjoint: A lam = grad - P nu, P^T lam = 0 (A is symmetric).
        lam = _ConstrainedSolve.apply(
            grad, hardness, positions, cell, zeros, operator, ctx.settings
        )
        grad_rhs = lam if ctx.needs_input_grad[0] else None
        grad_hardness = -lam * x if ctx.needs_input_grad[1] else None
        grad_positions = grad_cell = None
        wants = [ctx.needs_input_grad[2], ctx.needs_input_grad[3]]
        if any(wants):
            grad_positions = torch.zeros_like(positions) if wants[0] else None
            grad_cell = torch.zeros_like(cell) if wants[1] else None
            skip = not create_graph and not bool(lam.detach().any())
            if not skip:
                # -d/dR [lam^T C(R) x] at fixed lam, x (their own dependence on R is
                # carried by the graph when create_graph, through this same Function).
                with torch.enable_grad():
                    # Fresh nodes: the gradient w.r.t. them is the partial derivative at
                    # fixed lam and x, even when those depend on positions and cell.
                    pos = positions.clone() if create_graph else positions.detach().requires_grad_()
                    box = cell.clone() if create_graph else cell.detach().requires_grad_()
                    lam_, x_ = (lam, x) if create_graph else (lam.detach(), x.detach())
                    form = operator.bilinear(lam_, x_, pos, box, create_graph=create_graph)
                    inputs = [t for t, w in zip((pos, box), wants, strict=True) if w]
                    grads = torch.autograd.grad(
                        form, inputs, create_graph=create_graph, allow_unused=True
                    )
                grads = list(grads)
                if wants[0]:
                    g = grads.pop(0)
                    grad_positions = -g if g is not None else grad_positions
                if wants[1]:
                    g = grads.pop(0)
                    grad_cell = -g if g is not None else grad_cell
        return grad_rhs, grad_hardness, grad_positions, grad_cell, None, None, None


def check_groups(group_index, group_charge, n_atoms: int) -> int:
    """Validate the charge groups (host check); returns G.

    Raises:
        TypeError / ValueError: naming ``group_index`` or ``group_charge``.
    """
    if not isinstance(group_index, torch.Tensor) or group_index.dtype != torch.int64:
        raise TypeError(f"group_index must be an int64 tensor (N,), got {group_index!r}")
    if tuple(group_index.shape) != (n_atoms,):
        raise ValueError(
            f"group_index must have shape (N,) = ({n_atoms},), got {tuple(group_index.shape)}"
        )
    if not isinstance(group_charge, torch.Tensor) or group_charge.ndim != 1:
        raise ValueError(f"group_charge must be a (G,) tensor of charges (e), got {group_charge!r}")
    num_groups = group_charge.shape[0]
    if n_atoms and (int(group_index.min()) < 0 or int(group_index.max()) >= num_groups):
        raise ValueError(
            f"group_index values must be in [0, {num_groups}) (G = len(group_charge)), got "
            f"{int(group_index.min())}..{int(group_index.max())}"
        )
    counts = torch.bincount(group_index, minlength=num_groups)
    if bool((counts == 0).any()):
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"charge groups {empty} have no atoms, so their charge cannot be placed")
    if not bool(torch.isfinite(group_charge).all()):
        raise ValueError(f"group_charge must be finite, got {group_charge}")
    return num_groups


def equilibrate_charges(
    electronegativity: torch.Tensor,
    hardness: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    batch: torch.Tensor,
    group_index: torch.Tensor,
    group_charge: torch.Tensor,
    electrostatics,
    *,
    plan=None,
    tolerance: float = hp.QEQ_TOLERANCE,
    max_iterations: int = hp.QEQ_MAX_ITERATIONS,
    stats: dict | None = None,
) -> torch.Tensor:
    """Qeq charges (N,) e: the minimum of sum chi q + (1/2) sum (J + J_self) q² + E_coul(q)
    with each charge group's total fixed (module docstring).

    Differentiable w.r.t. ``electronegativity``, ``hardness``, ``positions`` and ``cell``
    (implicitly, by one adjoint solve per backward pass; to any order).

    Args:
        electronegativity: (N,) chi, eV/e.
        hardness: (N,) J > 0, eV/e² (the Gaussian self term J_self is added here).
        positions: (N, 3) Å (strained positions for stress).
        cell: (B, 3, 3) Å (strained).
        pbc: (B, 3) bool.
        batch: (N,) int64 structure of each atom.
        group_index: (N,) int64 charge group of each atom (e.g. ``batch``); a group
            should lie within one structure.
        group_charge: (G,) e, the total charge of each group.
        electrostatics: an :class:`~.module.Electrostatics` with ``sigma_q`` > 0.
        plan: its plan for these positions (None: built here).
        tolerance: relative residual of the solve (:func:`projected_cg`).
        max_iterations: CG iterations before a RuntimeError.
        stats: a dict to which the CG iteration counts (``"iterations"``, one entry per
            solve, forward and adjoint) and the Coulomb evaluations (``"evaluations"``)
            are written.

    Raises:
        ValueError: non-positive hardness, bad groups, ``sigma_q`` = 0.
        RuntimeError: the solve did not converge.
    """
    n = positions.shape[0]
    for name, value in (("electronegativity", electronegativity), ("hardness", hardness)):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != (n,):
            raise ValueError(f"{name} must be a (N,) = ({n},) tensor, got {value!r}")
        if value.dtype != positions.dtype:
            raise TypeError(f"{name} must have dtype {positions.dtype}, got {value.dtype}")
    if not bool(torch.isfinite(electronegativity.detach()).all()):
        raise ValueError("electronegativity must be finite")
    if n and not bool((hardness.detach() > 0).all()):
        raise ValueError(f"hardness must be > 0 eV/e², got minimum {float(hardness.min()):g}")
    hp.check_qeq_tolerance(tolerance)
    if (
        not isinstance(max_iterations, int)
        or isinstance(max_iterations, bool)
        or max_iterations < 1
    ):
        raise ValueError(f"max_iterations must be a positive integer, got {max_iterations!r}")
    num_groups = check_groups(group_index, group_charge, n)
    if group_charge.requires_grad:
        raise ValueError("group_charge is a constraint, not differentiated: detach it")
    if plan is None:
        plan = electrostatics.plan(positions.detach(), cell.detach(), pbc, batch)
    operator = CoulombOperator(
        electrostatics, plan, pbc, batch, group_index, num_groups, stats=stats
    )
    charges = _ConstrainedSolve.apply(
        -electronegativity,
        hardness,
        positions,
        cell,
        group_charge.to(positions.dtype),
        operator,
        (tolerance, max_iterations),
    )
    return charges


def qeq_energies(electronegativity, hardness, charges, sigma_q: float) -> torch.Tensor:
    """(N,) eV, chi_i q_i + (1/2) (J_i + J_self) q_i²: the on-site part of E_q (the
    Coulomb part is the Coulomb module's)."""
    return charges * (electronegativity + 0.5 * (hardness + self_hardness(sigma_q)) * charges)
