"""Every default of a model hyperparameter is ModelConfig's (hybridpot.hyperparameters).

The network, its radial parts and readouts, and the electrostatics can be built directly;
their keyword defaults must be the ones ``build_model`` uses, and their limits the ones
``ModelConfig`` checks (a value the config accepts must not fail later in a constructor).
"""

import dataclasses
import inspect

import pytest

from hybridpot import hyperparameters as hp
from hybridpot.electrostatics import Electrostatics
from hybridpot.model import ModelConfig
from hybridpot.nn import EquivariantNetwork
from hybridpot.nn.radial import BesselBasis, PolynomialEnvelope, RadialEmbedding
from hybridpot.nn.readout import EnergyReadout

# constructor -> {its argument: the ModelConfig field it stands for}
SAME_NAME = None  # every argument that is also a ModelConfig field, under the same name
CONSTRUCTORS = {
    EquivariantNetwork: SAME_NAME,
    RadialEmbedding: {
        "num_radial": "num_radial",
        "trainable": "trainable_radial",
        "polynomial_degree": "polynomial_degree",
    },
    BesselBasis: {"num_radial": "num_radial", "trainable": "trainable_radial"},
    PolynomialEnvelope: {"degree": "polynomial_degree"},
    EnergyReadout: {"energy_scale": "energy_scale"},
    Electrostatics: {
        "sigma_q": "sigma_q",
        "method": "coulomb_method",
        "accuracy": "coulomb_accuracy",
    },
}


def _config_defaults() -> dict:
    out = {}
    for f in dataclasses.fields(ModelConfig):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    # An "auto" default is compared as a default config resolves it (constructors take
    # what it resolves to).
    resolved = ModelConfig(elements=["H"], cutoff=5.0)
    resolved.validate()
    for name, value in out.items():
        if value == "auto":
            out[name] = getattr(resolved, name)
    return out


def _normalise(value):
    if isinstance(value, tuple):
        return list(value)
    if value is None or value == {}:
        return {}  # atomic_energies: None and {} both mean "no shift"
    return value


@pytest.mark.parametrize("constructor", list(CONSTRUCTORS), ids=lambda c: c.__name__)
def test_constructor_defaults_are_model_config_defaults(constructor):
    config = _config_defaults()
    parameters = inspect.signature(constructor).parameters
    mapping = CONSTRUCTORS[constructor]
    if mapping is SAME_NAME:
        mapping = {name: name for name in parameters if name in config}
    assert mapping, constructor
    for argument, field in mapping.items():
        default = parameters[argument].default
        assert default is not inspect.Parameter.empty, f"{constructor.__name__}({argument})"
        assert _normalise(default) == _normalise(config[field]), (
            f"{constructor.__name__}({argument}={default!r}) but ModelConfig.{field} "
            f"defaults to {config[field]!r}"
        )


def test_network_takes_every_network_field_of_model_config():
    """The network's defaults were compared on the fields it shares with ModelConfig;
    make sure that is every field that is not about the electrostatics or the model's
    uncertainty head."""
    network = set(inspect.signature(EquivariantNetwork).parameters)
    electrostatics = {
        "coulomb",
        "sigma_q",
        "coulomb_method",
        "coulomb_accuracy",
        "coulomb_split",
        "qeq_tolerance",
        "induction",
    }
    model_level = {"uncertainty"}
    assert set(_config_defaults()) - electrostatics - model_level <= network


def test_polynomial_degree_minimum_is_checked_by_the_config_first():
    low = hp.MIN_POLYNOMIAL_DEGREE
    with pytest.raises(ValueError, match=f"polynomial_degree must be an integer >= {low}"):
        ModelConfig(["Na"], 4.0, polynomial_degree=low - 1).validate()
    with pytest.raises(ValueError, match=f"polynomial_degree must be an integer >= {low}"):
        PolynomialEnvelope(4.0, low - 1)
    ModelConfig(["Na"], 4.0, polynomial_degree=low).validate()
    PolynomialEnvelope(4.0, low)


def test_l_max_limit_is_shared():
    with pytest.raises(ValueError, match=rf"l_max must be an integer in 0\.\.{hp.MAX_L}"):
        ModelConfig(["Na"], 4.0, l_max=hp.MAX_L + 1).validate()
    ModelConfig(["Na"], 4.0, l_max=hp.MAX_L).validate()


# (ModelConfig field, bad value, the same value given to a constructor, its argument name)
SAME_CHECK = [
    ("sigma_q", -0.1, lambda v: Electrostatics(sigma_q=v), "sigma_q"),
    ("coulomb_accuracy", 1.5, lambda v: Electrostatics(accuracy=v), "accuracy"),
    ("coulomb_method", "fmm", lambda v: Electrostatics(method=v), "method"),
    ("polynomial_degree", 1, lambda v: PolynomialEnvelope(4.0, v), "polynomial_degree"),
    ("l_max", 5, lambda v: EquivariantNetwork(["Na"], 4.0, l_max=v), "l_max"),
    (
        "charge_projection",
        "softmax",
        lambda v: EquivariantNetwork(["Na"], 4.0, charge_projection=v),
        "charge_projection",
    ),
    (
        "self_connection",
        "full",
        lambda v: EquivariantNetwork(["Na"], 4.0, self_connection=v),
        "self_connection",
    ),
]


@pytest.mark.parametrize("field, value, construct, argument", SAME_CHECK, ids=lambda x: str(x))
def test_a_bad_value_gets_the_same_error_from_the_config_and_the_constructor(
    field, value, construct, argument
):
    """One check per fact: the config (before any data is read) and the constructor
    refuse the value with the same message, up to the name of the argument."""
    with pytest.raises(ValueError) as from_config:
        ModelConfig(["Na"], 4.0, **{field: value}).validate()
    with pytest.raises(ValueError) as from_constructor:
        construct(value)
    assert str(from_config.value) == str(from_constructor.value).replace(argument, field, 1)
