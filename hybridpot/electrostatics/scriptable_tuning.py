"""The Coulomb parameter choice in TorchScript (the exported model's ``tuning``).

The same formulas and constants as :func:`hybridpot.electrostatics.tuning.choose_parameters`,
:meth:`~hybridpot.electrostatics.tuning.CoulombParameters.mesh_shape` and
:func:`hybridpot.electrostatics.slab.choose_gap`, evaluated in float64 inside the exported
model: the constants are read from those modules when the model is exported, so the
exported model picks exactly the smearing, real-space cutoff, mesh and slab gap that the
Python model picks for the same structure (tested through the energies they give,
``tests/deploy/test_export.py``). PME and P3M only (the Ewald k-cutoff needs
``scipy.special.erfcinv``).
"""

# TorchScript compiles typing.List/Tuple.
# ruff: noqa: UP006, UP035

from __future__ import annotations

import math
from typing import List, Tuple

import torch

from . import slab as slab_rules
from . import tuning


def fft_size(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3, 5 (``tuning.fft_size``)."""
    m = max(n, 1)
    k = 0
    while k != 1:
        k = m
        for p in [2, 3, 5]:
            while k % p == 0:
                k = k // p
        m += 1
    return m - 1


class ScriptableTuning(torch.nn.Module):
    """Parameters of one periodic (or slab) Coulomb sum, in TorchScript.

    Args:
        sigma_q: Gaussian charge width (Å).
        method: ``"pme"`` or ``"p3m"``.
        accuracy: target relative RMS force error.
        overrides: validated overrides (``Electrostatics.overrides``).
    """

    def __init__(self, sigma_q: float, method: str, accuracy: float, overrides: dict):
        super().__init__()
        self.sigma_q = float(sigma_q)
        self.accuracy = float(accuracy)
        self.nodes = int(overrides.get("interpolation_nodes", tuning.DEFAULT_NODES[method]))
        c, e, a = tuning.MESH_ERROR[method][self.nodes]
        self.mesh_c, self.mesh_e, self.mesh_a = float(c), float(e), float(a)
        # -1 marks "not overridden" (TorchScript has no Optional floats in attributes).
        self.fixed_smearing = float(overrides.get("smearing", -1.0))
        self.fixed_cutoff = float(overrides.get("real_space_cutoff", -1.0))
        self.fixed_spacing = float(overrides.get("mesh_spacing", -1.0))
        self.fixed_gap = float(overrides.get("slab_gap", -1.0))
        # The constants of the parameter choice, read from the modules that define them.
        self.force_fraction = float(tuning.FORCE_FRACTION)
        self.safety = float(tuning.SAFETY)
        self.cost_balance = float(tuning.COST_BALANCE)
        self.sigma_margin = float(tuning.SIGMA_MARGIN)
        self.real_space_margin = float(tuning.REAL_SPACE_MARGIN)
        self.max_mesh_points = int(tuning.MAX_MESH_POINTS)
        self.gap_constant = float(slab_rules.GAP_CONSTANT)

    def forward(self, volume: float, n_atoms: int) -> Tuple[float, float, float]:
        """(smearing, real-space cutoff, mesh spacing) in Å (:meth:`choose_parameters`)."""
        return self.choose_parameters(volume, n_atoms)

    @torch.jit.export
    def error_target(self, d: float) -> float:
        factor = 1.0
        if self.sigma_q > 0:
            x = d / (2.0 * self.sigma_q)
            factor = math.erf(x) - 2.0 * x * math.exp(-x * x) / math.sqrt(math.pi)
        return self.accuracy * (self.force_fraction * factor) / self.safety

    def _cutoff_ratio(self, d: float, cutoff: float, target: float) -> float:
        real_target = target / self.real_space_margin
        log_term = math.log(max(2.0 * math.sqrt(d / cutoff) / real_target, 1.0 + 1e-12))
        return math.sqrt(2.0 * log_term)

    def _mesh_ratio(self, d: float, smearing: float, target: float) -> float:
        return (target / (self.mesh_c * (d / smearing) ** self.mesh_a)) ** (1.0 / self.mesh_e)

    @torch.jit.export
    def choose_parameters(self, volume: float, n_atoms: int) -> Tuple[float, float, float]:
        """(smearing, real-space cutoff, mesh spacing) in Å: ``tuning.choose_parameters``."""
        d = (volume / n_atoms) ** (1.0 / 3.0)
        target = self.error_target(d)
        s_min = math.sqrt(2.0) * self.sigma_q
        smearing = self.fixed_smearing
        cutoff = self.fixed_cutoff
        if smearing > 0 and smearing <= s_min:
            raise ValueError("smearing must be > sqrt(2) * sigma_q")
        if cutoff < 0:
            density_cutoff = 3.0 * d
            for _ in range(3):
                x_r = self._cutoff_ratio(d, density_cutoff, target)
                x_k = self._mesh_ratio(d, density_cutoff / x_r, target)
                density_cutoff = self.cost_balance * d * math.sqrt(x_r / x_k)
            if smearing > 0:
                cutoff = smearing * self._cutoff_ratio(d, density_cutoff, target)
                cutoff = smearing * self._cutoff_ratio(d, cutoff, target)
            else:
                cutoff = density_cutoff
                ratio = self._cutoff_ratio(d, cutoff, target)
                smearing = cutoff / ratio
                if smearing < self.sigma_margin * s_min:
                    smearing = self.sigma_margin * s_min
                    cutoff = smearing * ratio
        elif smearing < 0:
            smearing = cutoff / self._cutoff_ratio(d, cutoff, target)
            if smearing <= s_min:
                raise ValueError(
                    "real_space_cutoff is too short for the Gaussian charges at this accuracy"
                )
        spacing = self.fixed_spacing
        if spacing < 0:
            spacing = smearing * self._mesh_ratio(d, smearing, target)
        return smearing, cutoff, spacing

    @torch.jit.export
    def mesh_shape(self, lengths: List[float], spacing: float) -> List[int]:
        """Mesh points along three rows of lengths ``lengths`` (``mesh_shape``)."""
        shape: List[int] = []
        for length in lengths:
            shape.append(fft_size(max(int(math.ceil(length / spacing)), self.nodes)))
        if shape[0] * shape[1] * shape[2] > self.max_mesh_points:
            raise ValueError("the mesh would exceed MAX_MESH_POINTS; loosen coulomb_accuracy")
        return shape

    @torch.jit.export
    def slab_gap(
        self, a1: torch.Tensor, a2: torch.Tensor, n_atoms: int, d: float, cutoff: float
    ) -> float:
        """Vacuum gap (Å) of a slab (``slab.choose_gap``, or the ``slab_gap`` override).

        Args:
            a1, a2: (3,) float64 Å, the periodic rows. n_atoms: N. d: Å, the slab's mean
            interatomic distance. cutoff: Å, the real-space cutoff.
        """
        gap = self.fixed_gap
        if gap < 0:
            area = float(torch.linalg.norm(torch.linalg.cross(a1, a2, dim=-1)))
            k_min = 2.0 * math.pi * self.shortest_plane_vector(a1, a2) / area
            target = self.error_target(d)
            ratio = self.gap_constant * math.sqrt(n_atoms) * d**2 / (area * target)
            gap = max(cutoff, math.log(max(ratio, 1.0)) / k_min)
        elif gap < cutoff:
            raise ValueError("slab_gap must be >= the real-space cutoff")
        return gap

    def shortest_plane_vector(self, a1: torch.Tensor, a2: torch.Tensor) -> float:
        """Shortest lattice vector of the 2D lattice (a1, a2) (``slab.shortest_plane_vector``)."""
        u, v = a1.clone(), a2.clone()
        for _ in range(100):
            if float(u @ u) > float(v @ v):
                u, v = v, u
            m = float(torch.round(torch.tensor(float(u @ v) / float(u @ u))))
            if m == 0:
                break
            v = v - m * u
        return min(float(torch.linalg.norm(u)), float(torch.linalg.norm(v)))
