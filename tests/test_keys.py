"""The field-name module: its constant agrees with torch-pme's, its names are unique."""

import torchpme.prefactors

from hybridpot import keys


def test_coulomb_constant_is_torchpme_value():
    assert keys.COULOMB_CONSTANT == torchpme.prefactors.eV_A


def test_field_names_are_unique_strings():
    names = {k: v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)}
    values = [v for k, v in names.items() if k != "TOTAL_CHARGE_INFO"]
    assert len(values) == len(set(values)), "two keys share a field name"
