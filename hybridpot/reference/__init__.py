"""A built-in ionic reference: the Tosi-Fumi rigid-ion model of NaCl and a data generator.

The project generates its own ground truth with it: tests and the demo fit hybrid
potentials to configurations labelled by :class:`TosiFumiCalculator`.
"""

from .generate import (
    DemoPreset,
    MDSettings,
    SamplingSpec,
    generate_nacl_dataset,
    make_demo_data,
    write_extxyz,
)
from .tosi_fumi import (
    NACL,
    TosiFumiCalculator,
    TosiFumiParameters,
    ionic_charges,
    pair_energy,
    short_range,
)

__all__ = [
    "NACL",
    "DemoPreset",
    "MDSettings",
    "SamplingSpec",
    "generate_nacl_dataset",
    "make_demo_data",
    "write_extxyz",
    "TosiFumiCalculator",
    "TosiFumiParameters",
    "ionic_charges",
    "pair_energy",
    "short_range",
]
