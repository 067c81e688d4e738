"""Defaults and allowed values of the model's hyperparameters: the one place they are written.

:class:`hybridpot.model.ModelConfig` (what ``build_model`` and the trainer use) takes its
field defaults from here, and so do the keyword defaults of the building blocks a user
may construct directly (:class:`hybridpot.nn.EquivariantNetwork`, the radial basis and
envelope, :class:`hybridpot.electrostatics.Electrostatics`), so a default cannot differ
between them (``tests/test_hyperparameters.py`` checks it). The meaning of each value is
documented once, on its ``ModelConfig`` field (``docs/model-config.md``).

The checks of the limits are here too, one function per fact, called by ``ModelConfig``
and by the constructors alike, so a value is judged (and its error worded) the same way
wherever it enters. Plain Python, no torch: the configuration and the CLI import it
without the network.
"""

import math
import numbers

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
# How the Coulomb energy splits the range with the network (hybridpot.electrostatics.screening):
# "cutoff" removes pairs inside the network cutoff smoothly, "none" keeps every pair.
COULOMB_SPLIT = "auto"  # "cutoff" for latent charges, "none" for Qeq
COULOMB_SPLITS = ("auto", "none", "cutoff")
# Scale of the initial raw charges (weights of the charge readout's output column):
# "auto" is LATENT_CHARGE_INIT_SCALE with a Coulomb term (small charges keep the untrained
# Coulomb energy small) and 1 without one (nothing to keep small: the charges are a side
# output that a charge loss may fit).
CHARGE_INIT_SCALE = "auto"
LATENT_CHARGE_INIT_SCALE = 0.1
COULOMB_ACCURACY = 1e-4  # relative RMS force error
# First-order induction (hybridpot.electrostatics.induction): "auto" turns it on when the
# training data hold a net charge (a structure or a fragment with |Q| >= NET_CHARGE_THRESHOLD):
# an ion's field, ~1/R², polarises matter beyond the cutoff (energy ~1/R⁴), which fixed
# latent charges cannot describe; without net charges the fields beyond the cutoff are
# dipolar or weaker and the term only adds freedom the energy fit must tame
# (docs/benchmarks.md, "Induction: the tail that latent charges miss").
INDUCTION = "auto"
NET_CHARGE_THRESHOLD = 0.01  # e
# Per-element polarisabilities (Å³) start here (of the order of a light atom's: H 0.67,
# C 1.76, O 0.80 Å³ free atoms).
INITIAL_POLARIZABILITY = 0.5

# --- charge equilibration (charge_model = "qeq") ----------------------------------------
CHARGE_MODEL = "latent"
#: Relative residual of the Qeq solve: ||KKT residual|| <= tol * ||A q0 - rhs||.
QEQ_TOLERANCE = 1e-6
#: CG iterations before the solve gives up with an error.
QEQ_MAX_ITERATIONS = 500
#: eV/e², added to softplus(network output) so the hardness J_i stays > 0.
QEQ_MIN_HARDNESS = 0.5

# --- allowed values -----------------------------------------------------------------------
#: Largest l of the edge spherical harmonics supported (and tested); l_max is in 0..MAX_L.
MAX_L = 4
#: Smallest degree p of the polynomial cutoff envelope (p = 1 would give u'(0) != 0: a
#: cusp at r = 0).
MIN_POLYNOMIAL_DEGREE = 2
SELF_CONNECTIONS = ("species", "linear", "none")
CHARGE_PROJECTIONS = ("weighted", "uniform")
#: ``charge_model``: charges read out directly ("latent") or by charge equilibration.
CHARGE_MODELS = ("latent", "qeq")
#: ``coulomb_method`` / ``Electrostatics(method=...)``.
COULOMB_METHODS = ("auto", "pme", "ewald", "p3m", "direct")


# --- the checks of those limits (one each; ModelConfig and the constructors call them) ---
def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_l_max(l_max) -> int:
    """``l_max``, an integer in 0..:data:`MAX_L` (ValueError otherwise)."""
    if isinstance(l_max, bool) or not isinstance(l_max, int) or not 0 <= l_max <= MAX_L:
        raise ValueError(f"l_max must be an integer in 0..{MAX_L}, got {l_max!r}")
    return l_max


def check_polynomial_degree(degree) -> int:
    """``polynomial_degree``, an integer >= :data:`MIN_POLYNOMIAL_DEGREE`."""
    message = f"polynomial_degree must be an integer >= {MIN_POLYNOMIAL_DEGREE}, got {degree!r}"
    if isinstance(degree, bool) or not isinstance(degree, int):
        raise TypeError(message)
    if degree < MIN_POLYNOMIAL_DEGREE:
        raise ValueError(message)
    return degree


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``; ValueError naming ``name`` otherwise."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_sigma_q(sigma_q) -> float:
    """The Gaussian charge width (Å): a finite number >= 0."""
    if not _is_real(sigma_q):
        raise TypeError(f"sigma_q must be a number (Å), got {type(sigma_q).__name__}")
    if not (math.isfinite(sigma_q) and sigma_q >= 0):
        raise ValueError(f"sigma_q must be a finite width >= 0 Å, got {sigma_q!r}")
    return float(sigma_q)


def check_charge_init_scale(scale) -> float:
    """A resolved ``charge_init_scale``: a finite number > 0 ("auto" is resolved by
    the model config)."""
    if not _is_real(scale):
        raise TypeError(f"charge_init_scale must be a number, got {scale!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"charge_init_scale must be finite and > 0, got {scale!r}")
    return float(scale)


def check_skin(skin) -> float:
    """A Verlet skin (Å): a finite number >= 0 (0: lists rebuilt at every call)."""
    if not _is_real(skin):
        raise ValueError(f"skin must be a finite length >= 0 Å, got {skin!r}")
    if not (math.isfinite(skin) and skin >= 0):
        raise ValueError(f"skin must be a finite length >= 0 Å, got {skin!r}")
    return float(skin)


def check_accuracy(accuracy, name: str = "accuracy") -> float:
    """The Coulomb target relative RMS force error: a number in (0, 1)."""
    if not _is_real(accuracy):
        raise TypeError(f"{name} must be a number, got {type(accuracy).__name__}")
    if not 0 < accuracy < 1:
        raise ValueError(
            f"{name} (target relative RMS force error) must be in (0, 1), got {accuracy!r}"
        )
    return float(accuracy)


def check_qeq_tolerance(tolerance, name: str = "qeq_tolerance") -> float:
    """The relative residual of the Qeq solve: a number in (0, 1)."""
    if not _is_real(tolerance):
        raise TypeError(f"{name} must be a number, got {type(tolerance).__name__}")
    if not 0 < tolerance < 1:
        raise ValueError(
            f"{name} (relative residual of the Qeq solve) must be in (0, 1), got {tolerance!r}"
        )
    return float(tolerance)
