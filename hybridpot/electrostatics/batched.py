"""The Coulomb energy of a whole batch at once, following a :class:`~.plan.CoulombPlan`.

Per-atom energies e_i (sum over a structure = its Coulomb energy):

    e_i = (1/2) sum_{pairs ij} k_e q_i q_j f(r_ij)               (one list, all structures)
        + q_i (1/2) [phi_i / V - q_i k_e sqrt(2/pi)/s - 2 k_e pi (s^2 - 2 sigma_q^2) Q / V]
        + slab correction_i                                       (slabs only)

with f(r) = [erf(r / (2 sigma_q)) - erf(r / (sqrt2 s))] / r the real-space kernel
(point charges: erfc(r / (sqrt2 s)) / r; non-periodic structures: the whole kernel,
erf(r / (2 sigma_q)) / r, i.e. 1/(sqrt2 s) = 0), phi the mesh potential of the
long-range kernel (one batched mesh per group of structures sharing a mesh shape,
:mod:`.mesh_potential`), the self term of each charge's own long-range Gaussian and the
neutralising background (``potential.long_range_potential``), and the
Yeh-Berkowitz/Ballenegger slab correction (:mod:`.slab`). The same physics as the
per-structure sum, term by term; tested equal to it and to independent references.

No Python loop over structures runs here except for the Ewald method (per structure:
its k-vectors differ) and nothing waits for the host.
"""

from __future__ import annotations

import math

import torch

from ..data.segments import (
    determinant3,
    gather_segments,
    inverse3,
    per_structure_matmul,
    segment_sum,
)
from ..keys import COULOMB_CONSTANT
from .mesh import PolynomialWeights
from .mesh_potential import mesh_potential, mesh_potential_autograd
from .plan import CoulombPlan, MeshGroup
from .potential import GaussianCoulombPotential, PairKernel, long_range_potential


def real_space_energies(plan: CoulombPlan, positions, cell, charges, sigma_q: float):
    """(N,) eV: half of every listed pair's k_e q_i q_j f(r_ij) to each of its atoms."""
    i, j = plan.pair_i, plan.pair_j
    shift = per_structure_matmul(plan.pair_shifts, cell, plan.pair_structure)
    vectors = positions.index_select(0, j) - positions.index_select(0, i) + shift
    r = torch.linalg.norm(vectors, dim=1)
    q_i, q_j = charges.index_select(0, i), charges.index_select(0, j)
    kernel = PairKernel.apply(r, plan.pair_inv_width, sigma_q)
    half = 0.5 * COULOMB_CONSTANT * q_i * q_j * kernel
    energies = torch.zeros_like(charges).index_add(0, i, half)
    return energies.index_add(0, j, half)


def internal_cells(plan: CoulombPlan, cell: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) the cells the k-space sums see: the cell, or for a slab its periodic
    rows with the vacuum row replaced by n L (n the unit normal, differentiable)."""
    if plan.slab_structures.numel() == 0:
        return cell
    slab_cells = cell.index_select(0, plan.slab_structures)  # (S, 3, 3)
    # The two periodic rows of each slab: (axis + 1) % 3 and (axis + 2) % 3 keep the
    # orientation of a1 x a2 consistent with the row order.
    rows = torch.arange(3, device=cell.device)
    axis = plan.slab_axis
    first = torch.minimum((axis + 1) % 3, (axis + 2) % 3)
    second = torch.maximum((axis + 1) % 3, (axis + 2) % 3)
    pick = torch.arange(slab_cells.shape[0], device=cell.device)
    cross = torch.linalg.cross(slab_cells[pick, first], slab_cells[pick, second], dim=-1)
    normal = cross / torch.linalg.norm(cross, dim=-1, keepdim=True)
    is_axis = (rows[None, :] == axis[:, None]).to(cell.dtype)[:, :, None]  # (S, 3, 1)
    vacuum_row = (normal * plan.slab_length[:, None])[:, None, :]  # (S, 1, 3)
    replaced = slab_cells * (1.0 - is_axis) + vacuum_row * is_axis
    return cell.index_copy(0, plan.slab_structures, replaced)


_WEIGHTS: dict = {}
#: k-space filters of the last few groups of cells (key: MeshGroup.filter_key, dtype,
#: device), for plans rebuilt at a fixed cell.
_FILTERS: dict = {}
_FILTER_CACHE_SIZE = 4


def _weight_function(method: str, nodes: int) -> PolynomialWeights:
    """torch-pme's 1D interpolation weights (Lagrange for PME, B-spline for P3M)."""
    key = (method, nodes)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = PolynomialWeights("Lagrange" if method == "pme" else "P3M", nodes)
    return _WEIGHTS[key]


def mesh_filters(group: MeshGroup, cells: torch.Tensor) -> torch.Tensor:
    """(G, nx, ny, nz // 2 + 1) k-space filters of the long-range kernel, one per cell.

    G(k) = k_e 4 pi exp(-s^2 k^2 / 2) / k^2 (0 at k = 0), times P3M's influence function
    1 / U^2(k) (U: the B-spline assignment's transform, prod_i sinc(m_i / n_i)^p, the
    phase per mesh step along lattice vector a_i being 2 pi m_i / n_i for any cell).
    k = 2 pi m @ inv(cell)^T is differentiable w.r.t. the (strained) cell.
    """
    nx, ny, nz = group.shape
    device, dtype = cells.device, cells.dtype
    freqs = [
        torch.fft.fftfreq(nx, device=device, dtype=dtype) * nx,
        torch.fft.fftfreq(ny, device=device, dtype=dtype) * ny,
        torch.fft.rfftfreq(nz, device=device, dtype=dtype) * nz,
    ]
    m = torch.stack(torch.meshgrid(*freqs, indexing="ij"), dim=-1)  # (nx, ny, nz', 3)
    # Explicit 3x3 inverse: no library check that would sync with the host on a GPU
    # (the plan checked the cells).
    reciprocal = 2.0 * torch.pi * inverse3(cells).transpose(-1, -2)  # (G, 3, 3)
    k = torch.einsum("xyzi,gij->gxyzj", m, reciprocal)
    k_sq = (k * k).sum(-1)
    s2 = (group.smearing**2)[:, None, None, None]
    masked = torch.where(k_sq == 0, 1.0, k_sq)
    kernel = torch.where(
        k_sq == 0, 0.0, COULOMB_CONSTANT * 4.0 * torch.pi * torch.exp(-0.5 * s2 * masked) / masked
    )
    if group.method == "p3m":
        phase = torch.stack([m[..., a] / group.shape[a] for a in range(3)], dim=-1)
        u2 = torch.prod(torch.sinc(phase), dim=-1) ** (2 * group.nodes)
        influence = torch.where(u2 == 0, 0.0, 1.0 / torch.where(u2 == 0, 1.0, u2))
        kernel = kernel * influence
    return kernel


def mesh_energies(
    group: MeshGroup,
    positions,
    kcells,
    charges,
    sigma_q: float,
    proportional_upstream: bool | None,
    analytic_kspace: bool = True,
) -> torch.Tensor:
    """(N_g,) eV: q_i times the long-range potential (k-space, self, background) / 2.

    ``analytic_kspace`` False: plain autograd through the mesh (mesh_potential_autograd).
    """
    cells = kcells.index_select(0, group.structures)
    pos = positions.index_select(0, group.atoms)
    q = charges.index_select(0, group.atoms)
    fractional = per_structure_matmul(pos, inverse3(cells), group.slot)
    # Mesh steps along each lattice vector (Python ints: no host-to-device copy).
    scaled = torch.stack([fractional[:, a] * group.shape[a] for a in range(3)], dim=1)
    if cells.requires_grad:
        kfilter = mesh_filters(group, cells)
    else:
        # Without a cell gradient (no stress) the filters are constants of the plan,
        # built once per plan (epochs over a cached batch, MD with a reused plan) and
        # shared between plans of the same cells (MD at a fixed cell).
        if group.filters is None or group.filters.dtype != cells.dtype:
            key = (group.filter_key, cells.dtype, str(cells.device))
            filters = _FILTERS.pop(key, None)
            if filters is None:
                filters = mesh_filters(group, cells).detach()
            _FILTERS[key] = filters  # most recently used last
            while len(_FILTERS) > _FILTER_CACHE_SIZE:
                _FILTERS.pop(next(iter(_FILTERS)))
            group.filters = filters
        kfilter = group.filters
    args = (
        scaled,
        q,
        kfilter,
        _weight_function(group.method, group.nodes),
        group.nodes,
        group.shape,
        group.slot,
    )
    if analytic_kspace:
        phi = mesh_potential(*args, proportional_upstream=proportional_upstream)
    else:
        phi = mesh_potential_autograd(*args)
    volume = determinant3(cells).abs()
    num = cells.shape[0]
    total = segment_sum(q, group.slot, num)
    per_atom = gather_segments(torch.stack([volume, group.smearing, total], 1), group.slot)
    potential = long_range_potential(
        phi / per_atom[:, 0], q, per_atom[:, 1], sigma_q, per_atom[:, 2], per_atom[:, 0]
    )
    return q * potential


def slab_corrections(
    plan: CoulombPlan, positions, kcells, charges, batch, sigma_q: float = 0.0
) -> torch.Tensor:
    """(N,) eV: per-atom shares of the slab correction (zero outside slabs).

    E_corr = (2 pi k_e / V) [M^2 - Q M2 - Q^2 L^2 / 12] along the unit normal n, with
    M = sum q z and M2 the second moment of the charge density along n: for Gaussian
    charges of width sigma_q, M2 = sum q (z^2 + sigma_q^2) (each cloud's own spread; the
    term -Q^2 sigma_q^2 matters only for charged slabs, whose energy would otherwise
    depend on the internal length L). z is measured from the slab's lowest atom (a
    constant of the plan); per atom q_i (pi k_e / V) [2 z_i M - M2 - Q z_i^2 - Q L^2 / 6
    - 2 Q sigma_q^2].
    """
    num_slabs = plan.slab_structures.numel()
    if num_slabs == 0:
        return torch.zeros_like(charges)
    # slab index of every atom (-1 outside slabs), without a host loop
    slab_of = torch.full((plan.num_graphs,), -1, dtype=torch.int64, device=charges.device)
    slab_of = slab_of.index_copy(
        0, plan.slab_structures, torch.arange(num_slabs, device=charges.device)
    )
    atom_slab = slab_of.index_select(0, batch)
    in_slab = atom_slab >= 0
    index = torch.where(in_slab, atom_slab, 0)
    cells = kcells.index_select(0, plan.slab_structures)
    rows = torch.arange(num_slabs, device=charges.device)
    normal_rows = cells[rows, plan.slab_axis]  # n L
    length = plan.slab_length
    normal = normal_rows / length[:, None]
    volume = determinant3(cells).abs()
    z = (positions * gather_segments(normal, index)).sum(-1) - gather_segments(
        plan.slab_origin, index
    )
    q = torch.where(in_slab, charges, 0.0)
    total = segment_sum(q, index, num_slabs)
    dipole = segment_sum(q * z, index, num_slabs)
    second = segment_sum(q * z * z, index, num_slabs)
    per = gather_segments(torch.stack([total, dipole, second, length, volume], 1), index)
    total_i, length_i = per[:, 0], per[:, 3]
    bracket = 2.0 * z * per[:, 1] - per[:, 2] - total_i * z * z - total_i * length_i**2 / 6.0
    bracket = bracket - 2.0 * total_i * sigma_q**2
    return COULOMB_CONSTANT * math.pi / per[:, 4] * q * bracket


def ewald_energies(plan: CoulombPlan, b: int, positions, kcells, charges, batch, sigma_q):
    """(N_b,) eV of structure ``b``'s Ewald k-space part (per structure: own k-vectors)."""
    from .kspace import SphericalEwald

    params = plan.parameters[b]
    atoms = torch.nonzero(batch == b).flatten()
    potential = GaussianCoulombPotential(smearing=params.smearing, sigma_q=sigma_q)
    calculator = SphericalEwald(potential, k_cutoff=params.k_cutoff).to(positions.device)
    q = charges.index_select(0, atoms)
    v = calculator._compute_kspace(
        q[:, None].to(positions.dtype), kcells[b], positions.index_select(0, atoms)
    )[:, 0]
    return atoms, q * v


def coulomb_energies(
    plan: CoulombPlan,
    positions: torch.Tensor,
    cell: torch.Tensor,
    charges: torch.Tensor,
    batch: torch.Tensor,
    *,
    sigma_q: float,
    proportional_upstream: bool | None = None,
    analytic_kspace: bool = True,
) -> torch.Tensor:
    """Per-atom Coulomb energies (N,) eV of a batch (module docstring), one pass.

    Args:
        plan: from :func:`~hybridpot.electrostatics.plan.build_plan` for these positions.
        positions: (N, 3) Å (strained for stress).
        cell: (B, 3, 3) Å (strained).
        charges: (N,) e.
        batch: (N,) int64.
        sigma_q: Gaussian width (Å).
        proportional_upstream: True: the energies are only differentiated through their
            sum per structure, once (forces/stress/potential without ``create_graph``):
            the mesh backward then reuses the forward mesh (see :mod:`.mesh_potential`).
            False: general backward. None: checked in the backward (a host sync).
        analytic_kspace: mesh gradients from the forward mesh (default) or plain
            autograd through the interpolation.
    """
    energies = real_space_energies(plan, positions, cell, charges, sigma_q)
    if not plan.mesh_groups and not plan.ewald_structures:
        return energies
    kcells = internal_cells(plan, cell)
    for group in plan.mesh_groups:
        e = mesh_energies(
            group, positions, kcells, charges, sigma_q, proportional_upstream, analytic_kspace
        )
        energies = energies.index_add(0, group.atoms, e)
    for b in plan.ewald_structures:
        atoms, e = ewald_energies(plan, b, positions, kcells, charges, batch, sigma_q)
        energies = energies.index_add(0, atoms, e)
    return energies + slab_corrections(plan, positions, kcells, charges, batch, sigma_q)
