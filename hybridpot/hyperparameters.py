"""Defaults and allowed values of the model's hyperparameters: the one place they are written.

:class:`hybridpot.model.ModelConfig` (what ``build_model`` and the trainer use) takes its
field defaults from here, and so do the keyword defaults of the building blocks a user
may construct directly (:class:`hybridpot.nn.EquivariantNetwork`, the radial basis and
envelope, :class:`hybridpot.electrostatics.Electrostatics`), so a default cannot differ
between them (``tests/test_hyperparameters.py`` checks it). The meaning of each value is
documented once, on its ``ModelConfig`` field (``docs/model-config.md``).

Plain Python, no torch: the configuration and the CLI import it without the network.
"""

# --- the equivariant network ------------------------------------------------------------
NUM_LAYERS = 2
HIDDEN_IRREPS = "32x0e + 16x1o + 8x2e"
L_MAX = 2
PARITY = True
NUM_RADIAL = 8
RADIAL_MLP = (64, 64)
POLYNOMIAL_DEGREE = 6
TRAINABLE_RADIAL = False
PRODUCT = True
SELF_CONNECTION = "species"
RESNET = True
READOUT_MLP = (32,)
AVG_NUM_NEIGHBORS = 20.0
ENERGY_SCALE = 1.0  # eV
CHARGE_PROJECTION = "weighted"

# --- the electrostatics -----------------------------------------------------------------
COULOMB = True
SIGMA_Q = 1.0  # Å, Gaussian charge width
COULOMB_METHOD = "auto"
COULOMB_ACCURACY = 1e-4  # relative RMS force error

# --- allowed values -----------------------------------------------------------------------
#: Largest l of the edge spherical harmonics supported (and tested); l_max is in 0..MAX_L.
MAX_L = 4
#: Smallest degree p of the polynomial cutoff envelope (p = 1 would give u'(0) != 0: a
#: cusp at r = 0).
MIN_POLYNOMIAL_DEGREE = 2
SELF_CONNECTIONS = ("species", "linear", "none")
CHARGE_PROJECTIONS = ("weighted", "uniform")
#: ``coulomb_method`` / ``Electrostatics(method=...)``.
COULOMB_METHODS = ("auto", "pme", "ewald", "p3m", "direct")
