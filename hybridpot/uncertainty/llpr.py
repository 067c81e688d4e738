"""Last-layer prediction rigidity (LLPR): calibrated uncertainties from one model.

Each prediction is linear in the weights of its readout's last layer
(:mod:`hybridpot.uncertainty.features`). With a Gaussian posterior on those weights given
the training set, the variance of a prediction with feature vector x is

    sigma^2 = alpha^2 x^T (X^T X + s^2 I)^-1 x

(Bigi et al., "A prediction rigidity formalism for low-cost uncertainties in trained
neural networks", 2024), X the training features, s^2 a regulariser and alpha^2 a
calibration factor, both fitted on the validation set after training
(:func:`hybridpot.uncertainty.fit_uncertainty`). Three such forms are kept:

| property | x | X rows | sigma of |
|---|---|---|---|
| energy | Phi_b = sum_{i in b} phi_i | training structures | the structure's energy (eV) |
| forces | phi_i | training atoms | each force component of atom i (eV/Å) |
| charges | psi_i | training atoms | atom i's charge (e) |

The force uncertainty is the "local" LLPR: the rigidity of atom i's own energy
contribution, scaled by a factor fitted to the validation force errors. It needs no extra
derivative pass (its cost is one (N, H) x (H, H) product), unlike the exact LLPR of the
forces, whose features are the derivatives d Phi / d r_i (H backward passes).
"""

from __future__ import annotations

import torch

from .. import keys
from ..data.segments import segment_sum
from .features import charge_features, energy_features

#: The properties with an LLPR state, in the order of the ``alpha2`` buffer.
UQ_PROPERTIES = ("energy", "forces", "charges")


def quadratic_form(x: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """x_m^T A x_m = |x_m U|^2 for each row of ``x`` (M, H), with A = U U^T given by its
    root ``U`` (H, H): (M,), >= 0 by construction (a sum of squares, accurate in float32
    where the inverse itself is ill-conditioned)."""
    return (x @ root).square().sum(-1)


def inverse_root(gram: torch.Tensor, regularizer: float) -> torch.Tensor:
    """U (H, H) with U U^T = (G + s^2 I)^-1 for a symmetric positive semi-definite ``gram``
    G (float64 eigen-decomposition: U = V diag((lambda + s^2)^-1/2))."""
    values, vectors = torch.linalg.eigh(gram.double())
    return vectors * (values.clamp_min(0.0) + regularizer).rsqrt()[None, :]


class LastLayerUncertainty(torch.nn.Module):
    """The LLPR state of a model (buffers, saved in the model file) and its evaluation.

    Args:
        energy_width: H, inputs of the energy readout's last layer.
        charge_width: inputs of the charge readout's last layer (0: no charge readout).

    Buffers: ``energy_root`` and ``forces_root`` (H, H) (1/eV), ``charges_root``
    (H_q, H_q) (1/e), the roots U of the inverse covariances (U U^T = (X^T X + s^2 I)^-1,
    :func:`inverse_root`), ``alpha2`` (3,) the calibration factors
    (energy, forces, charges; 0 = not calibrated: the property gets no uncertainty) and
    ``regularizer`` (3,) the fitted s^2.
    """

    def __init__(self, energy_width: int, charge_width: int = 0) -> None:
        super().__init__()
        self.register_buffer("energy_root", torch.zeros(energy_width, energy_width))
        self.register_buffer("forces_root", torch.zeros(energy_width, energy_width))
        self.register_buffer("charges_root", torch.zeros(charge_width, charge_width))
        self.register_buffer("alpha2", torch.zeros(len(UQ_PROPERTIES)))
        self.register_buffer("regularizer", torch.zeros(len(UQ_PROPERTIES)))
        self.to(torch.float64)

    def calibrated(self, name: str) -> bool:
        """Whether property ``name`` (energy, forces, charges) has a fitted uncertainty."""
        return bool(self.alpha2[UQ_PROPERTIES.index(name)] > 0)

    def extra_repr(self) -> str:
        return f"alpha2={self.alpha2.tolist()}, regularizer={self.regularizer.tolist()}"

    @torch.no_grad()
    def forward(
        self,
        network,
        features: torch.Tensor,
        species: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        charge_groups: tuple[torch.Tensor, int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Calibrated standard deviations from the network's node features.

        Args:
            network: the model's :class:`hybridpot.nn.EquivariantNetwork`.
            features: (N + S, F) ``keys.NODE_FEATURES`` of the network's forward pass.
            species: (N,) species index of each atom.
            batch: (N,) structure index of each atom.
            num_graphs: B.
            charge_groups: (group index (N,), number of groups) of the charge projection
                when it is not per structure (fragments); None: ``(batch, num_graphs)``.

        Returns:
            ``keys.ENERGY_UNCERTAINTY`` (B,) eV and ``keys.FORCES_UNCERTAINTY`` (N,) eV/Å
            when calibrated, and ``keys.CHARGES_UNCERTAINTY`` (N,) e when the charges
            were calibrated (they need charge labels in the validation set). Detached.
        """
        features = features.detach()
        dtype = features.dtype
        alpha2 = self.alpha2.to(dtype)
        out = {}
        phi = energy_features(network, features, species)
        if self.calibrated("energy"):
            structure = segment_sum(phi, batch, num_graphs)
            variance = alpha2[0] * quadratic_form(structure, self.energy_root.to(dtype))
            out[keys.ENERGY_UNCERTAINTY] = variance.sqrt()
        if self.calibrated("forces"):
            variance = alpha2[1] * quadratic_form(phi, self.forces_root.to(dtype))
            out[keys.FORCES_UNCERTAINTY] = variance.sqrt()
        if self.calibrated("charges") and network.charge_readout is not None:
            n_atoms = species.shape[0]
            groups, num_groups = charge_groups or (batch, num_graphs)
            psi = charge_features(network, features[:n_atoms], groups, num_groups)
            variance = alpha2[2] * quadratic_form(psi, self.charges_root.to(dtype))
            out[keys.CHARGES_UNCERTAINTY] = variance.sqrt()
        return out
