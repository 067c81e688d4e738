"""Test helpers shipped with the package: independent references, crystals, tolerances.

The references compute with plain NumPy/SciPy/ASE (no torch arithmetic, no torch-pme; only
conventions such as the Voigt order are imported), so they check the torch code
independently:

- :func:`ewald_sum`, :func:`direct_sum` (``ewald_reference``): exhaustively converged
  float64 Coulomb sums of point or Gaussian charges with analytic forces, stress and
  potential; :func:`slab_ewald_sum` and :func:`yeh_berkowitz_correction`
  (``slab_reference``): the exact 2D-periodic sum and the 3D slab correction.
- :func:`crystal`, :data:`CRYSTALS`, :func:`madelung_from_energy` (``crystals``):
  textbook ionic crystals with their Madelung constants; :func:`random_ionic_cell` and
  :func:`rocksalt_supercell`: random charged test systems.
- :func:`tolerances` (``tolerances``): the table of test tolerances keyed by dtype.

- ``qeq_reference``: dense charge equilibration (the N x N Coulomb matrix from potentials
  or energies, then a direct KKT solve), the reference of the matrix-free Qeq solver.

Torch-based helpers, imported from their modules (not re-exported here):
``finite_differences`` (forces and stress by central differences), ``structures`` (random
structures and a small model config) and ``network`` (a small equivariant network, random
molecules and crystals, exact float64 Wigner matrices for equivariance checks).
"""

from .crystals import (
    CRYSTALS,
    FORMS,
    crystal,
    madelung_from_energy,
    random_ionic_cell,
    rocksalt_supercell,
)
from .ewald_reference import COULOMB_CONSTANT, direct_sum, ewald_sum
from .slab_reference import slab_ewald_sum, yeh_berkowitz_correction
from .tolerances import Tolerances, tolerances

__all__ = [
    "COULOMB_CONSTANT",
    "CRYSTALS",
    "FORMS",
    "Tolerances",
    "crystal",
    "direct_sum",
    "ewald_sum",
    "madelung_from_energy",
    "random_ionic_cell",
    "rocksalt_supercell",
    "slab_ewald_sum",
    "tolerances",
    "yeh_berkowitz_correction",
]
