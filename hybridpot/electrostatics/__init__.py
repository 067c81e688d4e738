"""Exact, differentiable electrostatics of per-atom (Gaussian) charges for any periodicity.

- :func:`coulomb`: energy, forces, stress and potential dE/dq of fixed charges on an
  ``ase.Atoms`` (the reference everyone uses);
- :class:`Electrostatics`: the torch module the model calls (per-atom energies of a
  batched graph, differentiable w.r.t. positions, cell and charges);
- :func:`choose_parameters` / :class:`CoulombParameters`: accuracy-driven Ewald/PME/P3M
  parameters; :class:`GaussianCoulombPotential`: the torch-pme kernel of Gaussian charges;
- :func:`equilibrate_charges`: charge equilibration (Qeq) solved matrix-free on the
  Coulomb module, differentiable by an adjoint solve (``docs/qeq.md``).

The theory, the parameter choice and how it is tested: ``docs/electrostatics.md``.
"""

from .api import coulomb
from .module import METHODS, Electrostatics
from .potential import GaussianCoulombPotential
from .qeq import equilibrate_charges, qeq_energies
from .tuning import CoulombParameters, choose_parameters

__all__ = [
    "METHODS",
    "CoulombParameters",
    "Electrostatics",
    "GaussianCoulombPotential",
    "choose_parameters",
    "coulomb",
    "equilibrate_charges",
    "qeq_energies",
]
