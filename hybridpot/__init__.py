"""hybridpot: hybrid machine-learned interatomic potentials.

An O(3)-equivariant message-passing network predicts a short-range energy and per-atom
charges; the Coulomb energy of those charges is computed exactly (Ewald / PME for
periodic cells, a slab correction for 2D-periodic cells, a direct sum for molecules).
"""

__version__ = "0.1.0"

from . import keys  # noqa: F401
