"""ModelConfig: every bad value is a TypeError or ValueError naming the key."""

import pytest

from hybridpot.model.config import ModelConfig

BASE = {"elements": ["Na", "Cl"], "cutoff": 4.0}


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"r_max": 5.0}, ValueError, r"unknown model config key 'r_max'; did you mean 'cutoff'\?"),
        ({"max_ell": 2}, ValueError, r"'max_ell'; did you mean 'l_max'\?"),
        ({"num_interactions": 2}, ValueError, r"did you mean 'num_layers'\?"),
        ({"E0s": {}}, ValueError, r"did you mean 'atomic_energies'\?"),
        ({"cutof": 5.0}, ValueError, r"did you mean 'cutoff'\?"),
        (
            {"atomic_energies": {"Na": -1.0}},
            ValueError,
            r"atomic_energies gives no energy for elements \['Cl'\]",
        ),
        ({"atomic_energies": {"Na": "x", "Cl": 0.0}}, TypeError, r"atomic_energies\['Na'\]"),
        ({"coulomb_accuracy": "often"}, TypeError, "coulomb_accuracy must be a finite number"),
        ({"sigma_q": float("nan")}, TypeError, "sigma_q must be a finite number"),
        ({"cutoff": True}, TypeError, "cutoff must be a finite number"),
        ({"radial_mlp": [16, 0]}, TypeError, "radial_mlp must be a list of positive integers"),
        ({"elements": ["Na", 11]}, TypeError, "elements must be a list of chemical symbols"),
        ({"parity": "yes"}, TypeError, "parity must be true or false"),
        ({"num_layers": 2.0}, TypeError, "num_layers must be an integer"),
    ],
)
def test_bad_values_name_the_key(change, error, message):
    with pytest.raises(error, match=message):
        ModelConfig.from_dict({**BASE, **change})


def test_numbers_written_as_text_are_numbers():
    # PyYAML (YAML 1.1) reads 1e-8 without a dot as the string "1e-8".
    config = ModelConfig.from_dict({**BASE, "coulomb_accuracy": "1e-8", "cutoff": "4"})
    assert config.coulomb_accuracy == 1e-8 and config.cutoff == 4.0


def test_complete_or_empty_atomic_energies_are_accepted():
    assert ModelConfig.from_dict(BASE).atomic_energies == {}
    full = {"Na": -1.0, "Cl": 0.0}
    assert ModelConfig.from_dict({**BASE, "atomic_energies": full}).atomic_energies == full
