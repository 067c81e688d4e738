"""A TorchScript Coulomb sum of one structure, for the exported model (no host plan).

:class:`~hybridpot.electrostatics.Electrostatics` plans each batch on the host (Python
tuning, vesin pair lists, mesh groups) and runs custom autograd Functions; none of that
compiles to TorchScript. :class:`ScriptableCoulomb` computes the SAME energy for one
structure inside a TorchScript module, with plain autograd (forces, stress and dE/dq by
the engine's differentiation of the energy):

- the numerical parameters are chosen by the same formulas and constants
  (:mod:`.scriptable_tuning`), so the exported model picks exactly the smearing,
  real-space cutoff, mesh and slab gap that the Python model picks;
- the real-space pairs are found by a brute-force search over the periodic images that
  can reach the cutoff (:mod:`.scriptable_pairs`);
- the mesh sum is the chain of :mod:`.mesh_potential` (assign, FFT, filter, inverse FFT,
  interpolate) with torch-pme's interpolation polynomials (:class:`.mesh.PolynomialWeights`,
  the coefficient matrix stored as a buffer), differentiated by autograd;
- self, background and slab terms as in :mod:`.batched` and :mod:`.potential`.

Methods: PME and P3M for periodic cells and slabs, the direct sum for molecules. The
Ewald method is not exported (its k-cutoff needs ``scipy.special.erfcinv``).
Tested equal to the Python model to 1e-8 in ``tests/deploy``.
"""

# TorchScript (and metatomic's annotation check) compile typing.List/Dict/Tuple/Optional.
# ruff: noqa: UP006, UP035, UP045

from __future__ import annotations

import math
from typing import List

import torch

from ..keys import COULOMB_CONSTANT
from . import slab as slab_rules
from .mesh import PolynomialWeights
from .module import FLOAT32_ACCURACY_FLOOR
from .plan import COINCIDENT_DISTANCE
from .potential import pair_kernel
from .scriptable_pairs import determinant3, inverse3, periodic_pairs
from .scriptable_tuning import ScriptableTuning


class ScriptableCoulomb(torch.nn.Module):
    """Per-atom Coulomb energies of one structure, in TorchScript.

    Args:
        sigma_q: Gaussian charge width (Å), >= 0.
        method: ``"auto"``, ``"pme"``, ``"p3m"`` or ``"direct"`` (an
            :class:`~hybridpot.electrostatics.Electrostatics`' method).
        accuracy: target relative RMS force error.
        overrides: validated parameter overrides (``Electrostatics.overrides``).

    Raises:
        ValueError: ``method`` is ``"ewald"`` (not exportable).
    """

    def __init__(self, sigma_q: float, method: str, accuracy: float, overrides: dict):
        super().__init__()
        periodic = "pme" if method in ("auto", "direct") else method
        if periodic not in ("pme", "p3m"):
            raise ValueError(
                f"coulomb_method {method!r} cannot be exported: use 'auto', 'pme', 'p3m' "
                "or 'direct' (the Ewald k-cutoff needs scipy at run time)"
            )
        self.sigma_q = float(sigma_q)
        self.accuracy = float(accuracy)
        self.only_direct = method == "direct"
        self.p3m = periodic == "p3m"
        self.tuning = ScriptableTuning(sigma_q, periodic, accuracy, overrides)
        nodes = self.tuning.nodes
        self.nodes = nodes
        self.thickness_quantum = float(slab_rules.THICKNESS_QUANTUM)
        self.orthogonality_tolerance = float(slab_rules.ORTHOGONALITY_TOLERANCE)
        self.coincident = float(COINCIDENT_DISTANCE)
        self.coulomb_constant = float(COULOMB_CONSTANT)
        self.float32_floor = float(FLOAT32_ACCURACY_FLOOR)
        weights = PolynomialWeights("Lagrange" if periodic == "pme" else "P3M", nodes)
        self.register_buffer("weight_coefficients", weights._coefficients.clone())

    # ------------------------------------------------------------------ terms
    def _reject_coincident(self, distances: torch.Tensor):
        if self.sigma_q == 0 and distances.numel() > 0:
            if bool((distances < self.coincident).any()):
                raise ValueError(
                    "positions: two atoms coincide; point charges (sigma_q = 0) at the "
                    "same place have infinite energy"
                )

    # ------------------------------------------------------------------ terms
    def _direct(self, positions: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
        """Molecule: all pairs i < j, the whole kernel erf(r / (2 sigma_q)) / r."""
        n = positions.shape[0]
        ij = torch.triu_indices(n, n, offset=1, device=positions.device)
        i, j = ij[0], ij[1]
        r = torch.linalg.norm(positions[j] - positions[i], dim=1)
        self._reject_coincident(r.detach())
        kernel = pair_kernel(r, self.sigma_q, torch.zeros_like(r))
        half = 0.5 * self.coulomb_constant * charges[i] * charges[j] * kernel
        return torch.zeros_like(charges).index_add(0, i, half).index_add(0, j, half)

    def _real_space(
        self,
        positions: torch.Tensor,
        box: torch.Tensor,
        charges: torch.Tensor,
        periodic: List[bool],
        cutoff: float,
        smearing: float,
    ) -> torch.Tensor:
        """Half of k_e q_i q_j f(r_ij) over every listed (ordered) pair, to atom i."""
        i, j, shifts = periodic_pairs(
            positions.detach().to(torch.float64),
            box.detach().to(torch.float64),
            periodic,
            cutoff,
        )
        shifts = shifts.to(positions.dtype)
        vectors = positions.index_select(0, j) - positions.index_select(0, i) + shifts @ box
        r = torch.linalg.norm(vectors, dim=1)
        self._reject_coincident(r.detach())
        inv_width = torch.full_like(r, 1.0 / (math.sqrt(2.0) * smearing))
        kernel = pair_kernel(r, self.sigma_q, inv_width)
        half = 0.5 * self.coulomb_constant * charges.index_select(0, i) * charges.index_select(0, j)
        return torch.zeros_like(charges).index_add(0, i, half * kernel)

    def _weights(self, offsets: torch.Tensor) -> torch.Tensor:
        """(p, N, 3) interpolation weights by Horner's rule (``mesh.PolynomialWeights``)."""
        c = self.weight_coefficients.to(offsets.dtype)
        x = offsets[..., None]
        acc = c[:, -1].expand(offsets.shape[0], 3, self.nodes)
        for m in range(self.nodes - 2, -1, -1):
            acc = acc * x + c[:, m]
        return acc.permute(2, 0, 1)

    def _filter(self, cell: torch.Tensor, shape: List[int], smearing: float) -> torch.Tensor:
        """(1, nx, ny, nz // 2 + 1) k-space filter (``batched.mesh_filters``)."""
        nx, ny, nz = shape[0], shape[1], shape[2]
        dtype, device = cell.dtype, cell.device
        freqs = [
            torch.fft.fftfreq(nx, dtype=dtype, device=device) * nx,
            torch.fft.fftfreq(ny, dtype=dtype, device=device) * ny,
            torch.fft.rfftfreq(nz, dtype=dtype, device=device) * nz,
        ]
        grids = torch.meshgrid(freqs, indexing="ij")
        m = torch.stack(grids, dim=-1)
        reciprocal = 2.0 * math.pi * inverse3(cell).transpose(-1, -2)
        k = torch.einsum("xyzi,ij->xyzj", m, reciprocal)
        k_sq = (k * k).sum(-1)
        zero = k_sq == 0
        masked = torch.where(zero, torch.ones_like(k_sq), k_sq)
        kernel = torch.where(
            zero,
            torch.zeros_like(k_sq),
            self.coulomb_constant
            * 4.0
            * math.pi
            * torch.exp(-0.5 * (smearing * smearing) * masked)
            / masked,
        )
        if self.p3m:
            phase = torch.stack([m[..., a] / shape[a] for a in range(3)], dim=-1)
            u2 = torch.prod(torch.sinc(phase), dim=-1) ** (2 * self.nodes)
            ok = u2 != 0
            influence = torch.where(
                ok, 1.0 / torch.where(ok, u2, torch.ones_like(u2)), torch.zeros_like(u2)
            )
            kernel = kernel * influence
        return kernel[None]

    def _mesh(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        charges: torch.Tensor,
        shape: List[int],
        smearing: float,
    ) -> torch.Tensor:
        """q_i times the long-range potential (k-space minus self and background) / 2."""
        nodes = self.nodes
        fractional = positions @ inverse3(cell)
        scaled = torch.stack([fractional[:, a] * shape[a] for a in range(3)], dim=1)
        if nodes % 2 == 0:
            nearest = torch.floor(scaled.detach())
            offsets = scaled - (nearest + 0.5)
        else:
            nearest = torch.round(scaled.detach())
            offsets = scaled - nearest
        w = self._weights(offsets)
        wx, wy, wz = w[:, :, 0].T, w[:, :, 1].T, w[:, :, 2].T
        first = 1 - (nodes + 1) // 2
        steps = torch.arange(first, first + nodes, device=positions.device)
        index = nearest.long()[:, :, None] + steps
        ix, iy, iz = index[:, 0] % shape[0], index[:, 1] % shape[1], index[:, 2] % shape[2]
        plane = (ix * shape[1])[:, :, None] + iy[:, None, :]
        plane = plane * shape[2]
        flat = plane[:, :, :, None] + iz[:, None, None, :]
        # assign the charges to the mesh
        weights = (charges[:, None] * wx)[:, :, None, None] * wy[:, None, :, None]
        weights = weights * wz[:, None, None, :]
        size = shape[0] * shape[1] * shape[2]
        rho = torch.zeros(size, dtype=charges.dtype, device=charges.device)
        rho = rho.index_add(0, flat.reshape(-1), weights.reshape(-1))
        rho = rho.reshape(1, shape[0], shape[1], shape[2])
        # convolve with the filter (torch-pme's normalisation)
        spectrum = torch.fft.rfftn(rho, dim=(-3, -2, -1), norm="backward")
        kfilter = self._filter(cell, shape, smearing)
        # complex spectrum times the real filter, written on the real and imaginary parts:
        # TorchScript's autodiff does not take the real part of a complex gradient
        filtered = torch.view_as_complex(torch.view_as_real(spectrum) * kfilter[..., None])
        psi = torch.fft.irfftn(
            filtered,
            s=[shape[0], shape[1], shape[2]],
            dim=(-3, -2, -1),
            norm="forward",
        )
        # back-interpolate to the atoms
        values = psi.reshape(-1).index_select(0, flat.reshape(-1)).reshape(flat.shape)
        a = torch.einsum("nijk,nk->nij", values, wz)
        b = torch.einsum("nij,nj->ni", a, wy)
        phi = (b * wx).sum(1)
        volume = determinant3(cell).abs()
        total = charges.sum()
        self_term = self.coulomb_constant * math.sqrt(2.0 / math.pi) / smearing
        background = (
            self.coulomb_constant
            * math.pi
            * (smearing * smearing - 2.0 * self.sigma_q * self.sigma_q)
        )
        potential = 0.5 * (phi / volume - charges * self_term - 2.0 * background * total / volume)
        return charges * potential

    def _slab_correction(
        self,
        positions: torch.Tensor,
        internal: torch.Tensor,
        charges: torch.Tensor,
        axis: int,
        length: float,
        origin: float,
    ) -> torch.Tensor:
        """Per-atom Yeh-Berkowitz/Ballenegger correction (``batched.slab_corrections``)."""
        normal = internal[axis] / length
        volume = determinant3(internal).abs()
        z = (positions * normal).sum(-1) - origin
        total = charges.sum()
        dipole = (charges * z).sum()
        second = (charges * z * z).sum()
        bracket = 2.0 * z * dipole - second - total * z * z - total * length * length / 6.0
        bracket = bracket - 2.0 * total * self.sigma_q * self.sigma_q
        return self.coulomb_constant * math.pi / volume * charges * bracket

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        charges: torch.Tensor,
    ) -> torch.Tensor:
        """Per-atom Coulomb energies (N,) eV of one structure.

        Args:
            positions: (N, 3) Å. cell: (3, 3) Å, rows are lattice vectors. pbc: (3,)
            bool. charges: (N,) e. Gradients flow to all three float inputs.
        """
        if positions.dtype == torch.float32 and self.accuracy < self.float32_floor:
            energies = self._energies(positions.double(), cell.double(), pbc, charges.double())
            return energies.to(torch.float32)
        return self._energies(positions, cell, pbc, charges)

    def _energies(
        self,
        positions: torch.Tensor,
        cell: torch.Tensor,
        pbc: torch.Tensor,
        charges: torch.Tensor,
    ) -> torch.Tensor:
        n = positions.shape[0]
        periodic: List[bool] = [bool(pbc[0]), bool(pbc[1]), bool(pbc[2])]
        n_periodic = int(periodic[0]) + int(periodic[1]) + int(periodic[2])
        if n_periodic == 0 or n == 0:
            if n == 0:
                return torch.zeros_like(charges)
            return self._direct(positions, charges)
        if self.only_direct:
            raise ValueError("coulomb_method 'direct' is only for non-periodic structures")
        if n_periodic == 1:
            raise ValueError(
                "pbc with one periodic axis is not supported: use three (bulk), two (slab) "
                "or none (molecule)"
            )
        host = cell.detach().to(torch.float64)
        lengths = torch.linalg.norm(host, dim=1)
        if n_periodic == 3:
            volume = float(determinant3(host).abs())
            if not volume > 1e-10 * float(torch.prod(lengths)):
                raise ValueError("the periodic cell is singular")
            smearing, cutoff, spacing = self.tuning.choose_parameters(volume, n)
            energies = self._real_space(positions, cell, charges, periodic, cutoff, smearing)
            shape = self.tuning.mesh_shape(
                [float(lengths[0]), float(lengths[1]), float(lengths[2])], spacing
            )
            return energies + self._mesh(positions, cell, charges, shape, smearing)

        # --- slab: exactly one non-periodic axis (hybridpot.electrostatics.slab) ---
        axis = 0
        for a in range(3):
            if not periodic[a]:
                axis = a
        rows: List[int] = []
        for a in range(3):
            if a != axis:
                rows.append(a)
        a1, a2, a3 = host[rows[0]], host[rows[1]], host[axis]
        n1, n2, n3 = (
            float(torch.linalg.norm(a1)),
            float(torch.linalg.norm(a2)),
            float(torch.linalg.norm(a3)),
        )
        cross = torch.linalg.cross(a1, a2, dim=-1)
        area = float(torch.linalg.norm(cross))
        if n1 == 0 or n2 == 0 or not area > 1e-10 * n1 * n2:
            raise ValueError("cell: the two periodic rows of a slab must span a plane")
        if n3 > 0:
            cos = max(abs(float(a3 @ a1)) / (n3 * n1), abs(float(a3 @ a2)) / (n3 * n2))
            if cos > self.orthogonality_tolerance:
                raise ValueError(
                    "cell: the non-periodic row of a slab must be orthogonal to the periodic "
                    "rows (or zero)"
                )
        normal_host = cross / area
        points = positions.detach().to(torch.float64)
        z = points @ normal_host
        thickness = math.ceil(float(z.max() - z.min()) / self.thickness_quantum) * (
            self.thickness_quantum
        )
        d = max((area * thickness / n) ** (1.0 / 3.0), math.sqrt(area / n))
        smearing, cutoff, spacing = self.tuning.choose_parameters(n * d**3, n)
        gap = self.tuning.slab_gap(a1, a2, n, d, cutoff)
        length = thickness + gap
        origin = float(z.min())
        # internal 3D cell: the vacuum row replaced by n L (differentiable in the cell)
        first = min((axis + 1) % 3, (axis + 2) % 3)
        second = max((axis + 1) % 3, (axis + 2) % 3)
        normal_cross = torch.linalg.cross(cell[first], cell[second], dim=-1)
        normal = normal_cross / torch.linalg.norm(normal_cross)
        is_axis = (torch.arange(3, device=cell.device) == axis).to(cell.dtype)[:, None]
        internal = cell * (1.0 - is_axis) + (normal * length)[None, :] * is_axis
        internal_host = host.clone()
        internal_host[axis] = normal_host * length
        energies = self._real_space(positions, internal, charges, periodic, cutoff, smearing)
        internal_lengths = torch.linalg.norm(internal_host, dim=1)
        shape = self.tuning.mesh_shape(
            [float(internal_lengths[0]), float(internal_lengths[1]), float(internal_lengths[2])],
            spacing,
        )
        energies = energies + self._mesh(positions, internal, charges, shape, smearing)
        return energies + self._slab_correction(positions, internal, charges, axis, length, origin)
