"""The field-name module: its constant agrees with torch-pme's, its names are unique."""

import torchpme.prefactors

from hybridpot import keys


def test_coulomb_constant_is_torchpme_value():
    assert keys.COULOMB_CONSTANT == torchpme.prefactors.eV_A


def test_field_names_are_unique_strings():
    # The *_INFO / *_ARRAY names are keys of ase.Atoms (another namespace): they may
    # equal a graph or output field of the same meaning.
    names = {k: v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str)}
    values = [v for k, v in names.items() if not k.endswith(("_INFO", "_ARRAY"))]
    assert len(values) == len(set(values)), "two keys share a field name"
