"""Madelung constants from the reference sum, and the random test-system generators."""

import numpy as np
import pytest

from hybridpot.testing import (
    CRYSTALS,
    FORMS,
    crystal,
    ewald_sum,
    madelung_from_energy,
    random_ionic_cell,
    rocksalt_supercell,
)

# Constants as tabulated in the literature (to the digits given there), to check that
# the stored 15-digit values are the textbook ones in the textbook convention.
LITERATURE = {
    "NaCl": (1.747564594633, 1e-12),
    "CsCl": (1.762674773070, 1e-12),
    "zincblende": (1.638055053388, 1e-12),
    "wurtzite": (1.64132162737, 1e-11),
    "fluorite": (2.51939, 1e-5),
    "cuprite": (2.22124, 1e-5),
}


@pytest.mark.parametrize("name", sorted(CRYSTALS))
def test_stored_constant_is_the_literature_value(name):
    value, digits = LITERATURE[name]
    assert abs(CRYSTALS[name].madelung - value) < digits


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("name", sorted(CRYSTALS))
def test_madelung_constant_from_every_form(name, form):
    atoms = crystal(name, form, rng=np.random.default_rng(7))
    res = ewald_sum(atoms.positions, atoms.get_initial_charges(), atoms.cell.array)
    assert madelung_from_energy(res["energy"], atoms) == pytest.approx(
        CRYSTALS[name].madelung, rel=1e-10
    )
    # The rotated form's stress is the rotated isotropic stress (still isotropic) except
    # for wurtzite (hexagonal, not cubic); the trace obeys the virial theorem for 1/r:
    # tr(stress) V = -E (E scales as 1/length).
    trace = res["stress_tensor"].trace() * atoms.get_volume()
    assert trace == pytest.approx(-res["energy"], rel=1e-10)


def test_forms_are_what_they_say():
    conv = crystal("NaCl", "conventional")
    prim = crystal("NaCl", "primitive")
    skew = crystal("NaCl", "skewed")
    rot = crystal("NaCl", "rotated", rng=np.random.default_rng(1))
    assert len(conv) == 8 and len(prim) == len(skew) == len(rot) == 2
    assert prim.get_volume() == pytest.approx(conv.get_volume() / 4)
    assert skew.get_volume() == pytest.approx(prim.get_volume())
    angles = skew.cell.cellpar()[3:]
    assert np.all(np.abs(angles - 90) > 5) and np.all(np.abs(angles - 60) > 1)
    frac = skew.get_scaled_positions(wrap=False)
    assert np.any((frac < 0) | (frac >= 1))  # unwrapped
    scale = rot.info["nearest_distance"] / conv.info["nearest_distance"]
    assert scale != 1.0 and rot.get_volume() == pytest.approx(prim.get_volume() * scale**3)
    assert np.isclose(rot.get_initial_charges().sum(), 0)


def test_supercell_keeps_the_constant():
    atoms = crystal("fluorite", "skewed").repeat((2, 1, 3))
    res = ewald_sum(atoms.positions, atoms.get_initial_charges(), atoms.cell.array)
    assert madelung_from_energy(res["energy"], atoms) == pytest.approx(
        CRYSTALS["fluorite"].madelung, rel=1e-10
    )


def test_crystal_bad_input():
    with pytest.raises(ValueError, match="name: expected one of"):
        crystal("rutile")
    with pytest.raises(ValueError, match="form: expected one of"):
        crystal("NaCl", "supercell")
    with pytest.raises(ValueError, match="lattice_constant: expected a positive length"):
        crystal("NaCl", lattice_constant=-1.0)
    with pytest.raises(ValueError, match=r"atoms: expected info\['nearest_distance'\]"):
        madelung_from_energy(-1.0, random_ionic_cell(4, np.random.default_rng(0)))


@pytest.mark.parametrize("triclinic", [True, False])
def test_random_ionic_cell(triclinic):
    rng = np.random.default_rng(3)
    atoms = random_ionic_cell(40, rng, triclinic=triclinic, net_charge=-2.5, density=0.04)
    q = atoms.get_initial_charges()
    assert len(atoms) == 40 and q.sum() == pytest.approx(-2.5, abs=1e-12)
    assert atoms.info["charge"] == -2.5 and np.std(q) > 0.5
    assert atoms.get_volume() == pytest.approx(40 / 0.04)
    angles = atoms.cell.cellpar()[3:]
    assert np.any(np.abs(angles - 90) > 1) == triclinic
    frac = atoms.get_scaled_positions(wrap=False)
    assert np.any((frac < 0) | (frac >= 1))
    # Minimum image distance >= 1 Å (checked against the reference neighbour images).
    from ase.geometry import get_distances

    _, dist = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    assert dist[~np.eye(40, dtype=bool)].min() >= 1.0


def test_random_ionic_cell_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n: expected a positive integer"):
        random_ionic_cell(0, rng)
    with pytest.raises(ValueError, match="density: could not place 50 atoms"):
        random_ionic_cell(50, rng, density=1.0, min_distance=1.0)
    with pytest.raises(ValueError, match="density: expected > 0"):
        random_ionic_cell(5, rng, density=0.0)


def test_rocksalt_supercell():
    rng = np.random.default_rng(0)
    atoms = rocksalt_supercell(3, rng, displacement=0.3)
    ideal = crystal("NaCl").repeat(3)
    assert len(atoms) == 216 and atoms.get_initial_charges().sum() == 0
    assert set(atoms.get_initial_charges()) == {-1.0, 1.0}
    rms = np.sqrt(np.mean(np.sum((atoms.positions - ideal.positions) ** 2, axis=1)))
    assert rms == pytest.approx(0.3, rel=0.1)
    assert atoms.get_volume() == pytest.approx(27 * 5.64**3)
    tri = rocksalt_supercell([[2, 0, 0], [1, 2, 0], [-1, 1, 2]], rng)
    assert len(tri) == 64 and np.any(np.abs(tri.cell.cellpar()[3:] - 90) > 5)
    assert len(rocksalt_supercell((2, 2, 1), rng)) == 32
    for bad in (0, (2, 0, 1), np.zeros((3, 3)), 1.5, (1, 2)):
        with pytest.raises(ValueError, match="repeat: expected a positive integer, three"):
            rocksalt_supercell(bad, rng)
