"""``induction: "auto"``: on when the training data hold an ion (a net charge), resolved
from the data by the trainer and stored resolved in the model file."""

import ase
import ase.io
import numpy as np
import pytest

from hybridpot import hyperparameters as hp
from hybridpot.cli import main
from hybridpot.data import graph_from_atoms
from hybridpot.data.packed import PackedDataset
from hybridpot.data.statistics import largest_net_charge
from hybridpot.model import ModelConfig, load_model
from hybridpot.train import load_config, train
from hybridpot.train.setup import induction_from_data
from hybridpot.train.synthetic import toy_nacl_clusters

CUTOFF = 3.0


def _pair(charge=None, fragment_charges=None) -> ase.Atoms:
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], [2.5, 0, 0]])
    if charge is not None:
        atoms.info["charge"] = charge
    if fragment_charges is not None:
        atoms.arrays["fragment"] = np.array([0, 1])
        atoms.info["fragment_charges"] = fragment_charges
    return atoms


def _graphs(*structures):
    return [graph_from_atoms(atoms, CUTOFF) for atoms in structures]


def test_largest_net_charge_of_structures_and_fragments():
    assert largest_net_charge(_graphs(_pair(), _pair())) == 0.0
    assert largest_net_charge(_graphs(_pair(), _pair(charge=-2.0))) == 2.0
    # A neutral pair of ions: the fragments carry the charge, the total does not.
    assert largest_net_charge(_graphs(_pair(fragment_charges=[1.0, -1.0]))) == 1.0
    assert largest_net_charge([]) == 0.0


def test_largest_net_charge_of_a_packed_file_counts_its_view(tmp_path):
    images = [_pair(), _pair(charge=1.5), _pair()]
    xyz, packed = tmp_path / "data.xyz", tmp_path / "data.hpk"
    ase.io.write(xyz, images, format="extxyz")
    assert main(["pack", str(xyz), "-o", str(packed)]) == 0
    dataset = PackedDataset(packed, CUTOFF)
    assert largest_net_charge(dataset) == 1.5
    assert largest_net_charge(dataset.subset([0, 2])) == 0.0


@pytest.mark.parametrize(
    ("model", "charge", "expected"),
    [
        ({}, 1.0, True),  # defaults: latent charges with a Coulomb term, an ion present
        ({}, 0.0, False),  # no net charge anywhere: nothing beyond the cutoff to polarise
        ({}, hp.NET_CHARGE_THRESHOLD, True),
        ({}, 0.5 * hp.NET_CHARGE_THRESHOLD, False),  # rounding noise is not an ion
        ({"coulomb": False}, 1.0, False),  # the charges never enter the energy
        ({"charge_model": "qeq"}, 1.0, False),  # Qeq charges already respond to the field
    ],
)
def test_auto_resolves_from_the_net_charges_and_the_charge_model(model, charge, expected):
    assert induction_from_data(model, _graphs(_pair(), _pair(charge=charge))) is expected


def test_auto_without_data_is_off_and_bad_values_are_named():
    assert hp.INDUCTION == "auto"
    assert ModelConfig(elements=["Na"], cutoff=3.0).induction == "auto"  # unresolved field
    assert ModelConfig.from_dict({"elements": ["Na"], "cutoff": 3.0}).induction is False
    explicit = ModelConfig.from_dict({"elements": ["Na"], "cutoff": 3.0, "induction": True})
    assert explicit.induction is True
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match=r"induction must be true, false or 'auto'"):
            ModelConfig.from_dict({"elements": ["Na"], "cutoff": 3.0, "induction": bad})


@pytest.mark.parametrize("charged", [True, False])
def test_training_resolves_auto_and_the_model_file_stores_it(tmp_path, charged):
    images = toy_nacl_clusters(4, pairs=1, seed=7)
    if charged:  # three of four, so the training split holds one whatever the shuffle
        for atoms in images[1:]:
            atoms.info["charge"] = 1.0
    path = tmp_path / "clusters.xyz"
    ase.io.write(path, images, format="extxyz")
    config = load_config(
        None,
        [
            f"data.train={path}",
            f"output_dir={tmp_path / 'run'}",
            "quiet=true",
            "plots=false",
            "epochs=1",
            "batch_size=2",
            "data.val_fraction=0.25",
            "model.cutoff=3.0",
            "model.num_layers=1",
            "model.hidden_irreps='4x0e + 4x1o'",
            "model.l_max=1",
            "model.num_radial=4",
            "model.radial_mlp=[8]",
        ],
    )
    assert "induction" not in config.model  # the default, "auto"
    result = train(config)
    assert result.model.model_config.induction is charged
    assert (result.model.polarizability_raw is not None) is charged
    assert load_model(tmp_path / "run" / "model.pt").model_config.induction is charged
