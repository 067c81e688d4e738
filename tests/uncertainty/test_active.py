"""The active-learning loop: config checks, labelling, and a bit-identical resume."""

import json

import ase.io
import numpy as np
import pytest
import torch

from hybridpot.model import load_model
from hybridpot.testing.structures import random_structure
from hybridpot.train.active import active_config_from_dict, run_active
from hybridpot.train.explore import label_structures, load_calculator
from hybridpot.train.schema import ConfigError

LJ = {
    "calculator": "ase.calculators.lj:LennardJones",
    "kwargs": {"sigma": 2.2, "epsilon": 0.05, "rc": 4.0, "smooth": True},
}


def loop_config(tmp_path, data, output):
    train, valid = data
    ase.io.write(tmp_path / "initial.xyz", train[:4])
    ase.io.write(tmp_path / "validation.xyz", valid[:4])
    starts = [
        random_structure(s, n=8, scale=6.0, pbc=p)
        for s, p in ((400, (True, True, True)), (401, (True, True, False)))
    ]
    ase.io.write(tmp_path / "starts.xyz", starts)
    return {
        "initial": str(tmp_path / "initial.xyz"),
        "validation": str(tmp_path / "validation.xyz"),
        "training": {
            "epochs": 2,
            "batch_size": 2,
            "dtype": "float64",
            "plots": False,
            "model": {
                "cutoff": 3.5,
                "num_layers": 1,
                "hidden_irreps": "4x0e + 2x1o",
                "l_max": 1,
                "num_radial": 4,
                "radial_mlp": [8],
                "readout_mlp": [4],
                "sigma_q": 0.0,
                "coulomb_accuracy": 1e-4,
            },
            "loss": {"energy": 1.0, "forces": 10.0},
        },
        "explore": {
            "structures": str(tmp_path / "starts.xyz"),
            "temperatures": [500.0],
            "strains": [0.0, 0.02],
            "steps": 6,
            "stride": 3,
        },
        "label": LJ,
        "per_round": 2,
        "max_rounds": 3,
        "output_dir": str(tmp_path / output),
    }


def test_config_errors_name_the_key(tmp_path, data):
    values = loop_config(tmp_path, data, "out")
    with pytest.raises(ConfigError, match="per_round must be >= 1"):
        active_config_from_dict({**values, "per_round": 0})
    with pytest.raises(ConfigError, match="stride <= steps"):
        active_config_from_dict({**values, "explore": {**values["explore"], "stride": 99}})
    with pytest.raises(ConfigError, match="training.data.train is set by the loop"):
        active_config_from_dict(
            {**values, "training": {**values["training"], "data": {"train": "x.xyz"}}}
        )
    with pytest.raises(ConfigError, match="explore.structures"):
        active_config_from_dict({**values, "explore": {}})
    with pytest.raises(ConfigError, match="per_roud"):
        active_config_from_dict({**values, "per_roud": 3})


def test_label_structures_with_a_named_calculator():
    frames = [
        random_structure(1, n=6, scale=6.0),
        random_structure(2, n=6, scale=6.0, pbc=(False,) * 3),
    ]
    labelled = label_structures(frames, load_calculator(LJ["calculator"], LJ["kwargs"]))
    assert "stress" in labelled[0].info and "stress" not in labelled[1].info
    assert labelled[0].arrays["forces"].shape == (6, 3) and labelled[0].calc is None
    with pytest.raises(ValueError, match="module:Class"):
        load_calculator("ase.calculators.lj.LennardJones")
    with pytest.raises(ValueError, match="has no 'Nope'"):
        load_calculator("ase.calculators.lj:Nope")


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_interrupted_loop_resumes_bit_identically(tmp_path, data):
    """3 rounds in one go, and the same loop stopped after round 0 and resumed: the same
    picks, the same history and bit-identical final weights (float64, CPU)."""
    whole = run_active(active_config_from_dict(loop_config(tmp_path, data, "whole")))
    config = active_config_from_dict(loop_config(tmp_path, data, "split"))

    def stop(round_, row):
        if round_ == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_active(config, on_round_end=stop)
    resumed = run_active(config)
    assert resumed.history == whole.history and resumed.reason == "max_rounds reached"
    assert resumed.n_labels == 4 + 2 * 2
    for r in (0, 1):
        a = ase.io.read(tmp_path / "whole" / f"round_00{r}" / "picked.xyz", ":")
        b = ase.io.read(tmp_path / "split" / f"round_00{r}" / "picked.xyz", ":")
        assert all(np.array_equal(x.positions, y.positions) for x, y in zip(a, b, strict=True))
    final_a, final_b = load_model(whole.model_path), load_model(resumed.model_path)
    for (name, x), (_, y) in zip(
        final_a.state_dict().items(), final_b.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    state = json.loads((tmp_path / "split" / "state.json").read_text())
    assert [row["round"] for row in state["rounds"]] == [0, 1, 2]
    # The loop never labelled a copy of a structure it already had.
    assert all(row.get("picked", 0) in (0, 2) for row in state["rounds"])
