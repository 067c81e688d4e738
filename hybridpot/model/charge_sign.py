"""A deterministic sign for latent and equilibrated charges.

Latent charges are fitted only through the Coulomb energy, which is quadratic in q: for
neutral charge groups (the projection q = q~ + w (Q - sum q~) / sum w with Q = 0 is
linear in q~), flipping the sign of every raw charge q~ flips every charge and leaves
energies, forces and stress exactly unchanged. Charge equilibration has the same freedom:
its energy chi q + (1/2) q^T A q is unchanged by (chi, q) -> (-chi, -q), so with neutral
groups, negating the electronegativities flips every charge and nothing else. Two
training runs can then land on opposite signs, and their charges cannot be compared
(two Qeq runs on a neutral dimer: O +0.22 e and -0.20 e). The convention fixes it:

    the most electronegative element of the training set (Pauling scale) carries a
    negative mean charge.

e.g. O in water and in NaCl(aq) (O 3.44 > Cl 3.16), Cl in NaCl, O in organic molecules.
Elements without a Pauling value (He, Ne, Ar) come last; ties go to the lighter element;
an element whose mean charge is negligible (< 1e-3 of the largest mean magnitude) passes
the decision to the next one.

The trainer orients every fresh model with a Coulomb term before training (so it starts in the
convention's basin) and again after training when the sign is still free: every training
and validation group neutral, no charge, dipole or Born-charge loss and no applied field
(each of these fixes the sign through the data, and then nothing is flipped).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.data import atomic_numbers

#: Pauling electronegativities (dimensionless), by chemical symbol.
PAULING = {
    "H": 2.20, "Li": 0.98, "Be": 1.57, "B": 2.04, "C": 2.55, "N": 3.04, "O": 3.44,
    "F": 3.98, "Na": 0.93, "Mg": 1.31, "Al": 1.61, "Si": 1.90, "P": 2.19, "S": 2.58,
    "Cl": 3.16, "K": 0.82, "Ca": 1.00, "Sc": 1.36, "Ti": 1.54, "V": 1.63, "Cr": 1.66,
    "Mn": 1.55, "Fe": 1.83, "Co": 1.88, "Ni": 1.91, "Cu": 1.90, "Zn": 1.65, "Ga": 1.81,
    "Ge": 2.01, "As": 2.18, "Se": 2.55, "Br": 2.96, "Kr": 3.00, "Rb": 0.82, "Sr": 0.95,
    "Y": 1.22, "Zr": 1.33, "Nb": 1.60, "Mo": 2.16, "Tc": 1.90, "Ru": 2.20, "Rh": 2.28,
    "Pd": 2.20, "Ag": 1.93, "Cd": 1.69, "In": 1.78, "Sn": 1.96, "Sb": 2.05, "Te": 2.10,
    "I": 2.66, "Xe": 2.60, "Cs": 0.79, "Ba": 0.89, "La": 1.10, "Ce": 1.12, "Pr": 1.13,
    "Nd": 1.14, "Sm": 1.17, "Gd": 1.20, "Dy": 1.22, "Ho": 1.23, "Er": 1.24, "Tm": 1.25,
    "Lu": 1.27, "Hf": 1.30, "Ta": 1.50, "W": 2.36, "Re": 1.90, "Os": 2.20, "Ir": 2.20,
    "Pt": 2.28, "Au": 2.54, "Hg": 2.00, "Tl": 1.62, "Pb": 2.33, "Bi": 2.02, "Po": 2.00,
    "At": 2.20, "Fr": 0.70, "Ra": 0.90, "Ac": 1.10, "Th": 1.30, "Pa": 1.50, "U": 1.38,
    "Np": 1.36, "Pu": 1.28,
}  # fmt: skip

#: Mean charges below this fraction of the largest one do not decide the sign.
NEGLIGIBLE = 1e-3


def electronegativity_order(elements: list[str]) -> list[str]:
    """``elements`` from the most to the least electronegative (Pauling; elements without
    a value last; ties broken by atomic number, lighter first)."""
    return sorted(elements, key=lambda s: (-PAULING.get(s, -1.0), atomic_numbers.get(s, 0), s))


def mean_charges(model, batches) -> dict[str, float]:
    """Mean predicted charge (e) of each element over the atoms of ``batches``.

    Args:
        model: a :class:`hybridpot.model.HybridModel`.
        batches: iterable of (batched) :class:`AtomicGraph` on the model's device.

    Returns:
        {symbol: mean charge in e} for the elements that occur in ``batches``.
    """
    elements = model.model_config.elements
    sums = np.zeros(len(elements))
    counts = np.zeros(len(elements))
    was_training = model.training
    model.eval()
    try:
        for graph in batches:
            out = model(graph, compute_forces=False, compute_stress=False)
            species = model.network.embedding.species_index(graph.numbers, check=False)
            charges = out["charges"].detach().double()
            sums += (
                torch.zeros(len(elements), dtype=torch.float64)
                .index_add(0, species.cpu(), charges.cpu())
                .numpy()
            )
            counts += np.bincount(species.cpu().numpy(), minlength=len(elements))
    finally:
        model.train(was_training)
    return {s: float(sums[k] / counts[k]) for k, s in enumerate(elements) if counts[k] > 0}


def sign_decision(means: dict[str, float]) -> tuple[str, float] | None:
    """The (element, mean charge) that decides the sign, or None when every mean is
    negligible (nothing to orient)."""
    if not means:
        return None
    largest = max(abs(v) for v in means.values())
    if largest == 0.0:
        return None
    for symbol in electronegativity_order(list(means)):
        if abs(means[symbol]) > NEGLIGIBLE * largest:
            return symbol, means[symbol]
    return None


def orient_charges(model, batches) -> bool:
    """Flip the model's raw charges if the convention is violated; True if flipped.

    Models with a Coulomb term are oriented (a short-range model's charges do not enter
    its energy). The flip negates the raw latent charges
    (:meth:`~hybridpot.nn.readout.ChargeReadout.flip_sign`) or, for charge equilibration,
    the electronegativities (:meth:`~hybridpot.nn.readout.QeqReadout.flip_sign`): the
    Qeq energy chi q + (1/2) q^T A q is unchanged by (chi, q) -> (-chi, -q), so on
    neutral groups its sign is just as free. Both flips are exact for neutral groups.
    """
    config = model.model_config
    if not config.coulomb:
        return False
    decision = sign_decision(mean_charges(model, batches))
    if decision is None or decision[1] < 0:
        return False
    model.network.charge_readout.flip_sign()
    return True


def sign_is_free(graphs, loss_weights: dict[str, float]) -> bool:
    """Whether the sign of latent charges trained on ``graphs`` with these loss weights
    is undetermined: every charge group neutral, no charge/dipole/BEC loss, no field.

    Args:
        graphs: the training (and validation) graphs: a list or a packed dataset.
        loss_weights: {target: weight} of the loss.
    """
    if any(loss_weights.get(name, 0.0) > 0 for name in ("charges", "dipole", "bec")):
        return False
    if hasattr(graphs, "array") and hasattr(graphs, "indices"):
        # A packed dataset (hybridpot.data.packed): no fragments, no fields.
        return bool(np.all(graphs.array("total_charge")[graphs.indices] == 0.0))
    for graph in graphs:
        if graph.electric_field is not None:
            return False
        _, group_charge = graph.charge_groups
        if bool((group_charge != 0).any()):
            return False
    return True
