"""The NaCl data generator: labels, reproducibility, the extxyz writer, the demo preset."""

import os

import ase.io
import numpy as np
import pytest

from hybridpot.reference import TosiFumiCalculator
from hybridpot.reference.generate import (
    QUICK_PRESET,
    MDSettings,
    _apportion,
    generate_nacl_dataset,
    make_demo_data,
    write_extxyz,
)
from hybridpot.reference.structures import SamplingSpec, build_structure

# Short runs: these tests check bookkeeping, not physics.
FAST_MD = MDSettings(equilibration_steps=3, stride=2, frames_per_run=2)
SMALL_SPECS = (
    SamplingSpec("crystal", "crystal", 1, (300.0, 600.0), 0.03, 0.03),
    SamplingSpec("vacancy", "vacancy", 1, (300.0, 600.0), 0.02, 0.02),
    SamplingSpec("slab", "slab", 1, (300.0, 600.0), 0.02, layers=2, vacuum=6.0),
    SamplingSpec("melt", "melt", 1, (1500.0, 2000.0)),
)


@pytest.fixture(scope="module")
def small_dataset():
    return generate_nacl_dataset(8, seed=11, specs=SMALL_SPECS, md=FAST_MD)


def test_dataset_has_all_labels(small_dataset):
    frames = small_dataset
    assert len(frames) == 8
    assert [f.info["config_type"] for f in frames] == [
        "crystal", "crystal", "vacancy", "vacancy", "slab", "slab", "melt", "melt"
    ]  # fmt: skip
    for f in frames:
        n = len(f)
        assert f.calc is None
        assert isinstance(f.info["energy"], float) and np.isfinite(f.info["energy"])
        assert f.arrays["forces"].shape == (n, 3) and np.isfinite(f.arrays["forces"]).all()
        np.testing.assert_array_equal(f.arrays["charges"], np.where(f.numbers == 11, 1.0, -1.0))
        assert f.info["charge"] == 0.0 and f.arrays["charges"].sum() == 0.0
        assert f.info["ref_energy_short"] + f.info["ref_energy_coulomb"] == pytest.approx(
            f.info["energy"], rel=1e-12
        )
        if f.info["config_type"] == "slab":
            assert f.pbc.tolist() == [True, True, False]
            assert "stress" not in f.info
        else:
            assert f.pbc.all()
            assert f.info["stress"].shape == (6,) and np.isfinite(f.info["stress"]).all()
    assert len(frames[2]) == 6  # one Na and one Cl removed from the 8-ion cell
    # Strained runs give triclinic cells.
    cell = frames[0].cell.array
    assert np.abs(cell - np.diag(np.diag(cell))).max() > 1e-3


def test_labels_equal_a_fresh_calculation(small_dataset):
    calc = TosiFumiCalculator()
    for f in small_dataset[::3]:
        atoms = f.copy()
        atoms.calc = calc
        assert atoms.get_potential_energy() == pytest.approx(f.info["energy"], abs=1e-9)
        np.testing.assert_allclose(atoms.get_forces(), f.arrays["forces"], atol=1e-9)
        if atoms.pbc.all():
            np.testing.assert_allclose(atoms.get_stress(), f.info["stress"], atol=1e-11)


def test_same_seed_same_data_other_seed_other_data(small_dataset):
    again = generate_nacl_dataset(8, seed=11, specs=SMALL_SPECS, md=FAST_MD)
    other = generate_nacl_dataset(8, seed=12, specs=SMALL_SPECS, md=FAST_MD)
    for a, b, c in zip(small_dataset, again, other, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.cell.array, b.cell.array)
        assert a.info["energy"] == b.info["energy"]
        np.testing.assert_array_equal(a.arrays["forces"], b.arrays["forces"])
        assert not np.allclose(a.positions, c.positions)


def test_frames_within_a_run_differ(small_dataset):
    first, second = small_dataset[0], small_dataset[1]
    assert np.abs(first.arrays["forces"] - second.arrays["forces"]).max() > 0.05


def test_apportion_adds_up():
    assert _apportion(10, [4, 1, 2, 1.5, 1.5]) == [4, 1, 2, 2, 1]
    for total in (1, 7, 100):
        assert sum(_apportion(total, [4, 1, 2, 1.5, 1.5])) == total


def test_build_structure_kinds():
    rng = np.random.default_rng(0)
    crystal = build_structure(SamplingSpec("c", "crystal", 2, (300.0, 300.0)), 300.0, rng)
    assert len(crystal) == 64 and crystal.get_chemical_formula() == "Cl32Na32"
    slab = build_structure(SamplingSpec("s", "slab", 2, (300.0, 300.0), layers=6), 300.0, rng)
    assert len(slab) == 96 and slab.pbc.tolist() == [True, True, False]
    z = slab.positions[:, 2]
    assert z.min() == pytest.approx(10.0) and slab.cell[2, 2] - z.max() == pytest.approx(10.0)
    melt = build_structure(SamplingSpec("m", "melt", 2, (1500.0, 1500.0)), 1500.0, rng)
    assert melt.get_volume() > 1.3 * crystal.get_volume()


def test_random_melt_respects_minimum_distances():
    rng = np.random.default_rng(4)
    melt = build_structure(SamplingSpec("m", "melt", 2, (1500.0, 1500.0)), 1500.0, rng)
    assert melt.get_chemical_formula() == "Cl32Na32"
    d = melt.get_all_distances(mic=True)
    same = melt.numbers[:, None] == melt.numbers[None, :]
    off = ~np.eye(len(melt), dtype=bool)
    assert d[same & off].min() >= 3.0 * 0.97  # limits hold before the +-3 % strain
    assert d[~same].min() >= 2.4 * 0.97


def test_exact_propagation_option():
    md = MDSettings(equilibration_steps=2, stride=2, frames_per_run=2, propagation="exact")
    frames = generate_nacl_dataset(2, seed=5, specs=SMALL_SPECS[:1], md=md)
    assert len(frames) == 2 and all("stress" in f.info for f in frames)
    with pytest.raises(ValueError, match="propagation: expected 'dsf' or 'exact', got 'fast'"):
        MDSettings(propagation="fast")


def test_write_extxyz_round_trip_and_atomicity(small_dataset, tmp_path):
    path = write_extxyz(small_dataset, tmp_path / "data.xyz")
    assert sorted(os.listdir(tmp_path)) == ["data.xyz"]  # no temporary file left behind
    back = ase.io.read(path, ":")
    assert len(back) == len(small_dataset)
    for a, b in zip(small_dataset, back, strict=True):
        # ASE moves energy, forces, stress and charges into a SinglePointCalculator.
        assert b.get_potential_energy() == pytest.approx(a.info["energy"], rel=1e-12)
        # extxyz writes per-atom columns with 8 decimals (ASE's fixed %16.8f).
        np.testing.assert_allclose(b.get_forces(), a.arrays["forces"], rtol=0, atol=5.1e-9)
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=5.1e-9)
        np.testing.assert_allclose(b.get_charges(), a.arrays["charges"])
        assert b.info["config_type"] == a.info["config_type"]
        assert b.info["charge"] == 0.0
        assert b.pbc.tolist() == a.pbc.tolist()
        if a.pbc.all():
            np.testing.assert_allclose(b.get_stress(), a.info["stress"], rtol=1e-12)
    # Overwriting keeps the old file until the new one is complete.
    write_extxyz(small_dataset[:2], path)
    assert len(ase.io.read(path, ":")) == 2


def test_bad_input_is_rejected(tmp_path, small_dataset):
    with pytest.raises(ValueError, match="n_configs: expected >= 1, got 0"):
        generate_nacl_dataset(0, seed=1)
    with pytest.raises(TypeError, match="n_configs: expected an int, got float"):
        generate_nacl_dataset(2.5, seed=1)
    with pytest.raises(ValueError, match="seed: expected a non-negative int, got -3"):
        generate_nacl_dataset(2, seed=-3)
    with pytest.raises(TypeError, match="specs: expected a non-empty sequence of SamplingSpec"):
        generate_nacl_dataset(2, seed=1, specs=())
    with pytest.raises(ValueError, match=r"kind: expected one of .*got 'gas'"):
        SamplingSpec("x", "gas", 2, (300.0, 300.0))
    with pytest.raises(ValueError, match=r"temperature: expected 0 < T_min <= T_max K"):
        SamplingSpec("x", "crystal", 2, (900.0, 300.0))
    with pytest.raises(ValueError, match="layers: expected an even number >= 2, got 3"):
        SamplingSpec("x", "slab", 2, (300.0, 300.0), layers=3)
    with pytest.raises(ValueError, match="stride: expected an integer >= 1, got 0"):
        MDSettings(stride=0)
    with pytest.raises(TypeError, match="atoms_list: expected a non-empty sequence"):
        write_extxyz([], tmp_path / "x.xyz")
    with pytest.raises(ValueError, match="path: folder .* does not exist"):
        write_extxyz(small_dataset, tmp_path / "missing" / "x.xyz")


def test_quick_demo_data(tmp_path):
    paths = make_demo_data(tmp_path / "demo", seed=3, quick=True)
    assert sorted(paths) == ["test", "test_large", "test_slab", "train", "validation"]
    counts = {name: len(ase.io.read(p, ":")) for name, p in paths.items()}
    assert counts == {
        "train": QUICK_PRESET.n_train,
        "validation": QUICK_PRESET.n_validation,
        "test": QUICK_PRESET.n_test,
        "test_large": QUICK_PRESET.n_large,
        "test_slab": QUICK_PRESET.n_slab,
    }
    train = ase.io.read(paths["train"], ":")
    large = ase.io.read(paths["test_large"], ":")
    slab = ase.io.read(paths["test_slab"], ":")
    assert max(len(a) for a in train) < min(len(a) for a in large)
    assert {a.info["config_type"] for a in train} == {"crystal", "vacancy", "melt"}
    assert all(a.pbc.tolist() == [True, True, False] for a in slab)
    # Train and test come from different seeds: no shared configuration.
    test = ase.io.read(paths["test"], ":")
    assert not any(
        len(a) == len(b) and np.allclose(a.positions, b.positions) for a in train for b in test
    )
