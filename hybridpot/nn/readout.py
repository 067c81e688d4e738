"""Readouts from the even scalars (0e) of the last layer: energies, charges (and dipoles).

Energy:   E_i = scale * (MLP_E(s_i) - MLP_E(s_isolated(Z_i))) + shift[Z_i]      (eV)
          (shift = atomic reference energies; an atom without neighbours gets exactly it)
Charges:  q~_i = MLP_q(s_i)_0, then a projection per group b (a structure, or one of its
          fragments when fragments are given) so that sum_{i in b} q_i = Q_b:

    q_i = q~_i + w_i (Q_b - sum_{j in b} q~_j) / sum_{j in b} w_j

with w_i = 1 ("uniform") or w_i = softplus(MLP_q(s_i)_1) + w_min ("weighted"). Summing over
b gives sum q~ + (Q_b - sum q~) * 1 = Q_b exactly, whatever q~ and w are; the projection is
the minimum-norm (in the metric 1/w) correction, and w lets the network decide which atoms
absorb the excess charge (e.g. the counter-ion rather than a water molecule).
"""

from __future__ import annotations

import numbers

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3

from ..data.segments import gather_segments, segment_sum
from ..hyperparameters import (
    CHARGE_PROJECTIONS,
    ENERGY_SCALE,
    QEQ_MIN_HARDNESS,
    check_charge_init_scale,
    check_choice,
)
from ..keys import ATOMIC_DIPOLES  # noqa: F401 (re-exported by hybridpot.nn)

# Smallest per-atom weight of the "weighted" projection: keeps sum_j w_j > 0 even when the
# softplus underflows, so the division is always defined.
W_MIN = 1e-4


def project_charges(
    q_tilde: torch.Tensor,
    weights: torch.Tensor | None,
    batch: torch.Tensor,
    num_graphs: int,
    total_charge: torch.Tensor,
) -> torch.Tensor:
    """Shift raw charges so that each group's charges sum to its total charge.

    A group is a structure, or a fragment of one (a molecule, an ion) when fragments are
    given: the excess of one group is spread over its own atoms only, so no charge moves
    between groups.

    Args:
        q_tilde: (N,) e, raw per-atom charges.
        weights: (N,) positive per-atom weights, or None for uniform weights.
        batch: (N,) int64 group index of each atom (the structure index when each
            structure is one group).
        num_graphs: G, the number of groups.
        total_charge: (G,) e.

    Returns:
        (N,) e, q_i = q~_i + w_i (Q_g - sum_g q~) / sum_g w. A group with no atoms is
        left alone.
    """
    if weights is None:
        weights = torch.ones_like(q_tilde)
    sum_q = segment_sum(q_tilde, batch, num_graphs)
    sum_w = segment_sum(weights, batch, num_graphs)
    excess_per_weight = (total_charge.to(q_tilde.dtype) - sum_q) / sum_w.clamp_min(W_MIN)
    return q_tilde + weights * gather_segments(excess_per_weight, batch)


def _check_mlp(widths, name: str) -> tuple[int, ...]:
    if isinstance(widths, int) and not isinstance(widths, bool):
        widths = (widths,)
    if not isinstance(widths, (list, tuple)) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
    ):
        raise ValueError(f"{name} must be a list of hidden widths (ints >= 1), got {widths!r}")
    return tuple(widths)


class EnergyReadout(torch.nn.Module):
    """Per-atom short-range energy (N,) eV from the even scalars (N, num_scalars).

    Args:
        num_scalars: number of 0e features read.
        hidden: hidden widths of the MLP (may be empty: a linear readout).
        elements: the model's chemical symbols (species order).
        atomic_energies: eV per element (the per-atom shift); elements missing from the
            dict get 0; None = all shifts 0.
        energy_scale: eV, multiplies the MLP output (set from the spread of the data).
    """

    def __init__(
        self,
        num_scalars: int,
        hidden: tuple[int, ...],
        elements: list[str],
        atomic_energies: dict[str, float] | None = None,
        energy_scale: float = ENERGY_SCALE,
    ) -> None:
        super().__init__()
        hidden = _check_mlp(hidden, "readout_mlp")
        self.mlp = e3nn_nn.FullyConnectedNet([num_scalars, *hidden, 1], torch.nn.functional.silu)
        # Filled in float64. A float32 model (``model.to(torch.float32)``) casts it with
        # every buffer: reference energies of ~1e3 eV then round by ~1e-4 eV per atom.
        shift = torch.zeros(len(elements), dtype=torch.float64)
        if atomic_energies is not None:
            if not isinstance(atomic_energies, dict):
                raise TypeError(
                    f"atomic_energies must be a dict {{symbol: eV}}, "
                    f"got {type(atomic_energies).__name__}"
                )
            unknown = sorted(set(atomic_energies) - set(elements))
            if unknown:
                raise ValueError(
                    f"atomic_energies has elements {unknown} that are not in the model's "
                    f"elements {elements}"
                )
            for k, e in enumerate(elements):
                value = atomic_energies.get(e, 0.0)
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise TypeError(f"atomic_energies[{e!r}] must be a number (eV), got {value!r}")
                if value != value or abs(value) == float("inf"):
                    raise ValueError(f"atomic_energies[{e!r}] must be finite, got {value}")
                shift[k] = float(value)
        if isinstance(energy_scale, bool) or not isinstance(energy_scale, numbers.Real):
            raise TypeError(f"energy_scale must be a number (eV), got {energy_scale!r}")
        if not (energy_scale > 0 and energy_scale != float("inf")):
            raise ValueError(
                f"energy_scale must be a finite positive number (eV), got {energy_scale}"
            )
        self.register_buffer("shift", shift)
        self.register_buffer("scale", torch.tensor(float(energy_scale), dtype=torch.float64))

    def forward(self, scalars: torch.Tensor, species: torch.Tensor, n_atoms: int) -> torch.Tensor:
        """Energies (N,) eV of the first ``n_atoms`` rows of ``scalars``.

        ``scalars`` is (N + S, num_scalars): the N atoms, then one isolated atom of each
        of the S elements. E_i = scale * (MLP(s_i) - MLP(s_iso[Z_i])) + shift[Z_i], so an
        atom without neighbours has exactly its shift.
        """
        e = self.mlp(scalars).squeeze(-1)
        e_atoms, e_isolated = e[:n_atoms], e[n_atoms:]
        return self.scale * (e_atoms - e_isolated[species]) + self.shift[species]


class ChargeReadout(torch.nn.Module):
    """Per-atom charges (N,) e from the even scalars, summing exactly to each total charge.

    Args:
        num_scalars: number of 0e features read.
        hidden: hidden widths of the MLP.
        projection: "weighted" (learned positive weights) or "uniform" (w_i = 1).
        init_scale: multiplies the initial weights of the raw-charge output (> 0), so the
            untrained raw charges are of order ``init_scale`` e.
    """

    def __init__(
        self,
        num_scalars: int,
        hidden: tuple[int, ...],
        projection: str,
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        check_choice(projection, "charge_projection", CHARGE_PROJECTIONS)
        hidden = _check_mlp(hidden, "readout_mlp")
        init_scale = check_charge_init_scale(init_scale)
        self.projection = projection
        num_out = 2 if projection == "weighted" else 1
        self.mlp = e3nn_nn.FullyConnectedNet(
            [num_scalars, *hidden, num_out], torch.nn.functional.silu
        )
        with torch.no_grad():
            self.raw_charge_weight()[:, 0] *= init_scale

    def raw_charge_weight(self) -> torch.nn.Parameter:
        """The last layer's weights (hidden, outputs); column 0 gives the raw charges."""
        return self.mlp[-1].weight

    def flip_sign(self) -> None:
        """Negate the raw charges q~ (column 0 of the last layer). Each neutral group's
        projected charges change sign exactly; a charged group's do not."""
        with torch.no_grad():
            self.raw_charge_weight()[:, 0].neg_()

    def forward(
        self,
        scalars: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        total_charge: torch.Tensor,
    ) -> torch.Tensor:
        out = self.mlp(scalars)
        q_tilde = out[:, 0]
        weights = None
        if self.projection == "weighted":
            weights = torch.nn.functional.softplus(out[:, 1]) + W_MIN
        return project_charges(q_tilde, weights, batch, num_graphs, total_charge)


class QeqReadout(torch.nn.Module):
    """Per-atom electronegativity chi_i (N,) eV/e and hardness J_i (N,) eV/e² for charge
    equilibration (:mod:`hybridpot.electrostatics.qeq`), from the even scalars:

        chi_i = MLP(s_i)_0,     J_i = softplus(MLP(s_i)_1) + J_min   (> 0)

    with J_min = :data:`hybridpot.hyperparameters.QEQ_MIN_HARDNESS`. The charges follow
    from the constrained minimum, which sums to each group's charge by construction.

    Args:
        num_scalars: number of 0e features read.
        hidden: hidden widths of the MLP.
    """

    def __init__(self, num_scalars: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        hidden = _check_mlp(hidden, "readout_mlp")
        self.mlp = e3nn_nn.FullyConnectedNet([num_scalars, *hidden, 2], torch.nn.functional.silu)

    def flip_sign(self) -> None:
        """Negate chi (column 0 of the last layer, which has no bias or activation). With
        every charge group neutral, the constrained minimum of chi q + (1/2) q^T A q then
        moves to -q exactly and its value does not change, so energies and forces stay
        the same (the Qeq analogue of :meth:`ChargeReadout.flip_sign`); a charged group's
        charges do not simply change sign."""
        with torch.no_grad():
            self.mlp[-1].weight[:, 0].neg_()

    def forward(self, scalars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(scalars)
        return out[:, 0], torch.nn.functional.softplus(out[:, 1]) + QEQ_MIN_HARDNESS


class DipoleReadout(torch.nn.Module):
    """Per-atom dipoles (N, 3) e·Å: a linear map of the l = 1 features to one vector.

    ``irreps_in`` must contain a vector irrep ``vector`` (1o with parity on, 1e with it off);
    e3nn (>= 0.5) orders the l = 1 components as (x, y, z), like the Cartesian frame.
    """

    def __init__(self, irreps_in: o3.Irreps, vector: o3.Irrep) -> None:
        super().__init__()
        self.linear = o3.Linear(irreps_in, o3.Irreps([(1, vector)]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)
