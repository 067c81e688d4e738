"""The O(3)-equivariant network: radial basis, species embedding, interaction blocks, readouts.

See ``docs/network.md`` for the architecture and every option.
"""

from .embedding import SpeciesEmbedding
from .interaction import InteractionBlock, make_gate
from .irreps import exact_float64
from .network import DEFAULT_HIDDEN_IRREPS, EquivariantNetwork
from .product import NodeProduct
from .radial import BesselBasis, PolynomialEnvelope, RadialEmbedding
from .readout import (
    ATOMIC_DIPOLES,
    ChargeReadout,
    DipoleReadout,
    EnergyReadout,
    QeqReadout,
    project_charges,
)

__all__ = [
    "ATOMIC_DIPOLES",
    "DEFAULT_HIDDEN_IRREPS",
    "BesselBasis",
    "ChargeReadout",
    "DipoleReadout",
    "EnergyReadout",
    "EquivariantNetwork",
    "InteractionBlock",
    "NodeProduct",
    "PolynomialEnvelope",
    "QeqReadout",
    "RadialEmbedding",
    "SpeciesEmbedding",
    "exact_float64",
    "make_gate",
    "project_charges",
]
