"""Reciprocal-space (long-range) parts: torch-pme calculators with explicit grids.

Three torch-pme calculators, each subclassed for one reason:

- :class:`MeshPME` (``PMECalculator``) and :class:`MeshP3M` (``P3MCalculator``) take the
  mesh shape (n_a, n_b, n_c) points along the three lattice vectors from the caller
  instead of rounding a spacing up to powers of two (torch-pme's ``get_ns_mesh``): FFTs
  of 2^a 3^b 5^c sizes are just as fast, and rounding to powers of two wastes up to 2x
  points per axis (8x in 3D).
- both use :class:`~hybridpot.electrostatics.mesh.SeparableMeshInterpolator`, a faster
  drop-in for torch-pme's ``MeshInterpolator`` (same weights).
- :class:`MeshP3M` also fixes torch-pme 0.5's P3M influence function on non-orthogonal
  cells: torch-pme multiplies the Cartesian k by |a_i| / n_i axis by axis, which is the
  phase per mesh step only when the lattice vectors lie along x, y, z. The phase per mesh
  step along lattice vector a_i is k . a_i / n_i = 2 pi m_i / n_i for any cell.
- :class:`SphericalEwald` (``EwaldCalculator``) sums over the half sphere |k| <= k_cut
  (k and -k give the same term), which is exact in the cutoff and half the work of
  torch-pme's full box of k-vectors.

All three return torch-pme's per-atom potentials V_i (with the 1/2 of double counting
included: E = sum_i q_i V_i) of the long-range kernel, minus the self term, minus the
neutralising background; the real-space part is added by ``Calculator.forward``.
"""

from __future__ import annotations

import math

import torch
from torchpme import EwaldCalculator, P3MCalculator, PMECalculator
from torchpme.lib.kspace_filter import P3MKSpaceFilter

from .mesh import SeparableMeshInterpolator
from .mesh_potential import mesh_potential

# Largest (k-vectors x atoms) matrix the Ewald sum may build (float elements): several
# such matrices are kept for the backward pass.
MAX_EWALD_ELEMENTS = 30_000_000
# k-space filters of the last few (kernel, cell, mesh) combinations: a filter is a pure
# function of its key, so reusing one is exact (see ``_kspace_filter_values``).
_FILTER_CACHE: dict = {}
_FILTER_CACHE_SIZE = 4


def _long_range_corrections(
    calculator, potential_lr: torch.Tensor, charges: torch.Tensor, volume: torch.Tensor
) -> torch.Tensor:
    """Turn the k-space potential into torch-pme's per-atom V_i (shared by all methods).

    Args:
        potential_lr: (N, 1) sum over all j and all images of q_j phi_LR, self image
            included (the k-space sum cannot leave it out).
        charges: (N, 1) e.
        volume: cell volume, Å^3.
    """
    potential = calculator.potential
    # Remove each charge's interaction with its own long-range Gaussian at r = 0.
    potential_lr = potential_lr - charges * potential.self_contribution()
    # Neutralising background: the k = 0 term is left out of the k-space sum; the
    # uniform background of charge -Q then contributes -background * Q^2 / V to the
    # energy. The factor 2 compensates the 1/2 below.
    total_charge = charges.sum(dim=0)
    potential_lr = potential_lr - 2.0 * potential.background_correction() * total_charge / volume
    # Each pair is counted from both sides: V_i carries half of it.
    return potential_lr / 2.0


class _ExplicitMeshMixin:
    """Mesh-based k-space sum on a caller-given (3,) mesh shape ``self.mesh_shape``."""

    mesh_shape: torch.Tensor

    def _init_mesh(self, potential, mesh_shape, interpolation_nodes: int, method: str) -> None:
        """Fix the mesh shape and install the fast interpolator (``method``: weights)."""
        self.mesh_shape = _as_mesh_shape(mesh_shape, potential.smearing.device)
        self.mesh_interpolator = _fast_interpolator(self, interpolation_nodes, method)

    #: Use :func:`~hybridpot.electrostatics.mesh_potential.mesh_potential` (analytic
    #: backward from the forward mesh) instead of autograd through the interpolation.
    analytic_backward: bool = True

    def _compute_kspace(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: torch.Tensor | None = None,
        node_mask: torch.Tensor | None = None,
        kvectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ns = self.mesh_shape.to(cell.device)
        self.mesh_interpolator.update(cell, ns)
        volume = torch.abs(torch.linalg.det(cell))
        if self.analytic_backward:
            interpolator = self.mesh_interpolator
            scaled = ns * torch.matmul(positions, interpolator.inverse_cell)
            phi = mesh_potential(
                scaled,
                charges[:, 0],
                self._kspace_filter_values(cell, ns),
                interpolator._compute_1d_weights,
                interpolator.interpolation_nodes,
                tuple(int(n) for n in ns),
            )
            return _long_range_corrections(self, phi[:, None] / volume, charges, volume)
        self.kspace_filter.update(cell, ns)
        # Spread the charges on the mesh, convolve with the long-range kernel by FFT and
        # interpolate the potential back with the same weights (so forces are the exact
        # gradient of the mesh energy).
        self.mesh_interpolator.compute_weights(positions)
        rho_mesh = self.mesh_interpolator.points_to_mesh(particle_weights=charges)
        potential_mesh = self.kspace_filter.forward(rho_mesh)
        potential_lr = self.mesh_interpolator.mesh_to_points(potential_mesh) / volume
        return _long_range_corrections(self, potential_lr, charges, volume)

    def _kspace_filter_values(self, cell: torch.Tensor, ns: torch.Tensor) -> torch.Tensor:
        """The k-space filter G(k) (nx, ny, nz // 2 + 1) of this kernel on ``cell``.

        Building it (k-vectors, kernel, P3M influence function on the whole mesh) costs
        about a quarter of the mesh sum, so it is reused while the cell is the same, as
        in MD at fixed cell: the cache key holds everything the filter depends on (the
        kernel's class and parameters, the interpolation order, the exact cell values,
        the mesh, dtype and device). A cell that needs gradients (stress) always gets a
        freshly built, differentiable filter.
        """
        if cell.requires_grad:
            self.kspace_filter.update(cell, ns)
            return self.kspace_filter._kfilter
        potential = self.potential
        key = (
            type(self).__name__,
            type(potential).__name__,
            float(potential.smearing),
            float(potential.prefactor),
            int(self.mesh_interpolator.interpolation_nodes),
            cell.detach().to("cpu", torch.float64).numpy().tobytes(),
            tuple(int(n) for n in ns),
            cell.dtype,
            str(cell.device),
        )
        values = _FILTER_CACHE.pop(key, None)
        if values is None:
            self.kspace_filter.update(cell, ns)
            values = self.kspace_filter._kfilter.detach()
        _FILTER_CACHE[key] = values  # most recently used last
        while len(_FILTER_CACHE) > _FILTER_CACHE_SIZE:
            _FILTER_CACHE.pop(next(iter(_FILTER_CACHE)))
        return values


def _fast_interpolator(calculator, nodes: int, method: str) -> SeparableMeshInterpolator:
    cell = torch.eye(3, dtype=torch.float64, device=calculator.potential.smearing.device)
    ns = torch.ones(3, dtype=torch.int64, device=cell.device)
    return SeparableMeshInterpolator(cell, ns, interpolation_nodes=nodes, method=method)


def _as_mesh_shape(mesh_shape, device) -> torch.Tensor:
    shape = torch.as_tensor(mesh_shape, dtype=torch.int64, device=device).reshape(3)
    if bool((shape < 1).any()):
        raise ValueError(f"mesh_shape must hold three positive integers, got {mesh_shape!r}")
    return shape


class MeshPME(_ExplicitMeshMixin, PMECalculator):
    """Particle-mesh Ewald (Lagrange interpolation) on an explicit mesh.

    Args:
        potential: a :class:`~hybridpot.electrostatics.potential.GaussianCoulombPotential`.
        mesh_shape: (3,) mesh points along the three lattice vectors.
        interpolation_nodes: Lagrange interpolation nodes per axis, 3..7.
    """

    def __init__(self, potential, mesh_shape, interpolation_nodes: int = 4):
        # The spacing is unused: the mesh comes from ``mesh_shape``.
        super().__init__(
            potential,
            mesh_spacing=1.0,
            interpolation_nodes=interpolation_nodes,
            full_neighbor_list=False,
        )
        self._init_mesh(potential, mesh_shape, interpolation_nodes, "Lagrange")


class _LatticeP3MKSpaceFilter(P3MKSpaceFilter):
    """P3M influence function 1/U^2(k) with the mesh phase taken along lattice vectors."""

    def _compute_influence(self, kvectors: torch.Tensor) -> torch.Tensor:
        if self.mode != 0:
            raise ValueError(f"only mode 0 (point-charge potential) is used, got {self.mode}")
        # kh_i = k . a_i / n_i: the phase advance of exp(i k.r) per mesh step along a_i.
        # k . a_i = 2 pi m_i for every cell, so kh does not depend on the cell: it is
        # computed without gradients (autograd through sinc at 0 gave NaN second
        # derivatives w.r.t. the cell, i.e. in training on stress).
        kh = torch.einsum("xyzk,ik->xyzi", kvectors.detach(), self.cell.detach()) / self.ns_mesh
        # U(k): Fourier transform of the order-p B-spline charge assignment, normalised
        # per mesh cell: prod_i sinc(kh_i / 2 pi)^p. The influence function divides by
        # U^2 to undo assignment and back-interpolation.
        u2 = torch.prod(torch.sinc(kh / (2 * torch.pi)), dim=-1) ** (2 * self.interpolation_nodes)
        masked = torch.where(u2 == 0, 1.0, u2)
        return torch.where(u2 == 0, 0.0, 1.0 / masked)


class MeshP3M(_ExplicitMeshMixin, P3MCalculator):
    """P3M (B-spline assignment, deconvolving influence function) on an explicit mesh.

    Correct for any triclinic cell (see the module docstring).

    Args:
        potential: a :class:`~hybridpot.electrostatics.potential.GaussianCoulombPotential`.
        mesh_shape: (3,) mesh points along the three lattice vectors.
        interpolation_nodes: B-spline order (nodes per axis), 2..5 (1 would give no
            k-space forces: nearest-grid-point weights do not depend on positions).
    """

    def __init__(self, potential, mesh_shape, interpolation_nodes: int = 4):
        super().__init__(
            potential,
            mesh_spacing=1.0,
            interpolation_nodes=interpolation_nodes,
            full_neighbor_list=False,
        )
        self._init_mesh(potential, mesh_shape, interpolation_nodes, "P3M")
        cell = torch.eye(3, dtype=potential.smearing.dtype, device=potential.smearing.device)
        self.kspace_filter = _LatticeP3MKSpaceFilter(
            cell=cell,
            ns_mesh=torch.ones(3, dtype=torch.int64, device=cell.device),
            interpolation_nodes=interpolation_nodes,
            kernel=self.potential,
            mode=0,
            differential_order=2,
            fft_norm="backward",
            ifft_norm="forward",
        )


def half_sphere_miller_indices(cell: torch.Tensor, k_cutoff: float) -> torch.Tensor:
    """Integer m (K, 3) with 0 < |m @ B| <= k_cutoff, one of each pair +-m.

    Args:
        cell: (3, 3) Å (rows are lattice vectors); only its value is used.
        k_cutoff: 1/Å.

    Returns:
        (K, 3) int64 on the cell's device; k = 2 pi m @ inv(cell).T.
    """
    cell64 = cell.detach().to(torch.float64).cpu()
    recip = 2 * math.pi * torch.linalg.inv(cell64).T
    # |k . a_i| = 2 pi |m_i| <= |k| |a_i| bounds each index.
    bounds = torch.ceil(k_cutoff * torch.linalg.norm(cell64, dim=1) / (2 * math.pi)).long()
    ranges = [torch.arange(-int(b), int(b) + 1) for b in bounds]
    m = torch.stack(torch.meshgrid(*ranges, indexing="ij"), dim=-1).reshape(-1, 3)
    # Half space: first nonzero index positive (drops m = 0 and one of each +-m pair).
    first = torch.where(m[:, 0] != 0, m[:, 0], torch.where(m[:, 1] != 0, m[:, 1], m[:, 2]))
    k2 = ((m.double() @ recip) ** 2).sum(dim=1)
    keep = (first > 0) & (k2 <= k_cutoff**2)
    return m[keep].to(cell.device)


class SphericalEwald(EwaldCalculator):
    """Ewald sum over the half sphere |k| <= ``k_cutoff`` (1/Å).

    Args:
        potential: a :class:`~hybridpot.electrostatics.potential.GaussianCoulombPotential`.
        k_cutoff: reciprocal-space cutoff (1/Å), > 0.
    """

    def __init__(self, potential, k_cutoff: float):
        if not k_cutoff > 0:
            raise ValueError(f"k_cutoff must be > 0 1/Å, got {k_cutoff!r}")
        # torch-pme's own k-grid is not used; its wavelength argument only has to be valid.
        super().__init__(potential, lr_wavelength=math.pi / k_cutoff, full_neighbor_list=False)
        self.k_cutoff = float(k_cutoff)

    def _compute_kspace(
        self,
        charges: torch.Tensor,
        cell: torch.Tensor,
        positions: torch.Tensor,
        periodic: torch.Tensor | None = None,
        kvectors: torch.Tensor | None = None,
        node_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        miller = half_sphere_miller_indices(cell, self.k_cutoff)
        n_elements = miller.shape[0] * positions.shape[0]
        if n_elements > MAX_EWALD_ELEMENTS:
            raise ValueError(
                f"the Ewald sum would need {miller.shape[0]} k-vectors x "
                f"{positions.shape[0]} atoms = {n_elements:.3g} matrix elements "
                f"(limit {MAX_EWALD_ELEMENTS:.3g}); use method='pme' or a looser accuracy"
            )
        # k depends differentiably on the (strained) cell: k = 2 pi m inv(cell)^T.
        kvecs = 2 * torch.pi * miller.to(cell.dtype) @ torch.linalg.inv(cell).T
        kernel = self.potential.lr_from_k_sq((kvecs**2).sum(dim=1))  # (K,)
        phase = kvecs @ positions.T  # (K, N)
        cos, sin = torch.cos(phase), torch.sin(phase)
        # Structure factor S(k) = sum_j q_j exp(i k.r_j); the potential of the smooth
        # charges at r_i is (4 pi / V) sum_k exp(-s^2 k^2/2)/k^2 Re[exp(-i k.r_i) S(k)],
        # and the half sphere counts each +-k pair once: factor 2.
        s_cos = cos @ charges  # (K, 1)
        s_sin = sin @ charges
        volume = torch.abs(torch.linalg.det(cell))
        potential_lr = 2.0 * (cos.T @ (kernel[:, None] * s_cos) + sin.T @ (kernel[:, None] * s_sin))
        return _long_range_corrections(self, potential_lr / volume, charges, volume)
