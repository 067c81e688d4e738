"""The Tosi-Fumi short-range part: parameters, switch, derivatives, bad input.

These tests need no electrostatics: they exercise :func:`short_range` directly.
"""

import numpy as np
import pytest
from ase.build import bulk

from hybridpot.reference import NACL, TosiFumiParameters, ionic_charges, pair_energy, short_range
from hybridpot.reference.tosi_fumi import _switch

# eV per joule (exact since the 2019 SI redefinition).
EV = 1.602176634e-19


def rattled_triclinic_cell(seed: int, repeat: int = 1) -> "ase.Atoms":  # noqa: F821
    """A rock-salt cell, sheared into a triclinic cell and rattled (smaller than 2 cutoffs)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(repeat)
    deformation = np.eye(3) + rng.uniform(-0.06, 0.06, size=(3, 3))
    atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    atoms.positions += rng.normal(scale=0.12, size=atoms.positions.shape)
    # Unwrapped positions: push some atoms out of the cell by whole lattice vectors.
    atoms.positions += rng.integers(-1, 2, size=(len(atoms), 3)) @ atoms.cell.array
    return atoms


def test_parameters_in_ev_and_angstrom():
    # Published values in SI (Tosi & Fumi 1964) converted by hand: 1e-19 J = 1/1.602... eV.
    assert NACL.b == pytest.approx(0.338e-19 / EV, rel=1e-12)
    assert NACL.b == pytest.approx(0.210963, abs=1e-6)
    np.testing.assert_allclose(NACL.c6, np.array([1.68, 11.2, 116.0]) * 1e-19 / EV, rtol=1e-12)
    np.testing.assert_allclose(NACL.c8, np.array([0.8, 13.9, 233.0]) * 1e-19 / EV, rtol=1e-12)
    # The Na-Cl prefactor A b exp((sigma_Na + sigma_Cl)/rho) = 1254.86 eV (the commonly
    # quoted Tosi-Fumi Born-Mayer A for Na-Cl in eV, e.g. LAMMPS pair_style born inputs).
    assert NACL.prefactors()[1] == pytest.approx(1254.86, abs=0.01)


def test_pair_energy_matches_the_formula_in_si_units():
    # Independent evaluation of phi(r) = A b exp((s_i+s_j-r)/rho) - C/r^6 - D/r^8 in SI.
    r_ang = np.array([2.4, 2.8, 3.3, 4.0, 5.6])
    r_m = r_ang * 1e-10
    b, rho = 0.338e-19, 0.317e-10
    sig = {"++": 2 * 1.170e-10, "+-": (1.170 + 1.585) * 1e-10, "--": 2 * 1.585e-10}
    a = {"++": 1.25, "+-": 1.0, "--": 0.75}
    c = {"++": 1.68e-79, "+-": 11.2e-79, "--": 116e-79}
    d = {"++": 0.8e-99, "+-": 13.9e-99, "--": 233e-99}
    for k, name in enumerate(("++", "+-", "--")):
        expected = (
            a[name] * b * np.exp((sig[name] - r_m) / rho) - c[name] / r_m**6 - d[name] / r_m**8
        ) / EV
        phi, _ = pair_energy(r_ang, np.full(len(r_ang), k))
        np.testing.assert_allclose(phi, expected, rtol=1e-12)


def test_pair_derivative_and_switch_by_finite_differences():
    r = np.linspace(2.0, 9.5, 301)
    h = 1e-6
    for k in range(3):
        types = np.full(len(r), k)
        _, dphi = pair_energy(r, types)
        fd = (pair_energy(r + h, types)[0] - pair_energy(r - h, types)[0]) / (2 * h)
        np.testing.assert_allclose(dphi, fd, rtol=1e-7, atol=1e-9)
    s, ds = _switch(r, 7.5, 9.0)
    fd = (_switch(r + h, 7.5, 9.0)[0] - _switch(r - h, 7.5, 9.0)[0]) / (2 * h)
    np.testing.assert_allclose(ds, fd, atol=1e-8)
    # C2 switch: value 1 / slope 0 at r_on, value 0 / slope 0 at and beyond the cutoff.
    s_on, ds_on = _switch(np.array([7.5]), 7.5, 9.0)
    s_c, ds_c = _switch(np.array([9.0, 9.3]), 7.5, 9.0)
    assert s_on[0] == 1.0 and ds_on[0] == 0.0
    np.testing.assert_array_equal(s_c, 0.0)
    np.testing.assert_array_equal(ds_c, 0.0)


def test_energy_is_continuous_when_a_pair_crosses_the_cutoff():
    # A Cl2 "molecule" stretched across the cutoff: energy and force go smoothly to zero.
    numbers = np.array([17, 17])
    values = []
    for d in (8.999, 8.9999, 9.0001):
        pos = np.array([[0.0, 0.0, 0.0], [d, 0.0, 0.0]])
        values.append(short_range(pos, numbers, np.zeros((3, 3)), [False] * 3)["energy"])
    assert abs(values[0]) < 1e-9 and abs(values[1]) < 1e-12 and values[2] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_short_range_forces_and_stress_match_finite_differences(seed):
    # Triclinic, rattled, unwrapped 8-ion cell: 9 Å cutoff > the cell, many self images.
    atoms = rattled_triclinic_cell(seed)

    def energy(pos, cell):
        return short_range(pos, atoms.numbers, cell, atoms.pbc)["energy"]

    out = short_range(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    h = 1e-5
    fd_forces = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.positions.copy(), atoms.positions.copy()
            plus[a, k] += h
            minus[a, k] -= h
            fd_forces[a, k] = -(energy(plus, atoms.cell.array) - energy(minus, atoms.cell.array))
    fd_forces /= 2 * h
    # Central differences with h = 1e-5 Å are good to ~1e-9 eV/Å here (forces ~1 eV/Å).
    np.testing.assert_allclose(out["forces"], fd_forces, atol=2e-8)

    fd_w = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            eps = np.zeros((3, 3))
            eps[a, b] += 0.5 * h
            eps[b, a] += 0.5 * h
            e_plus = energy(
                atoms.positions @ (np.eye(3) + eps), atoms.cell.array @ (np.eye(3) + eps)
            )
            e_minus = energy(
                atoms.positions @ (np.eye(3) - eps), atoms.cell.array @ (np.eye(3) - eps)
            )
            fd_w[a, b] = (e_plus - e_minus) / (2 * h)
    np.testing.assert_allclose(out["virial_derivative"], fd_w, atol=1e-6 * np.abs(fd_w).max())


def test_energies_sum_and_invariances():
    atoms = rattled_triclinic_cell(3, repeat=2)
    out = short_range(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    assert out["energies"].sum() == pytest.approx(out["energy"], rel=1e-13)
    # Translation and wrapping leave everything unchanged; forces sum to zero.
    moved = atoms.copy()
    moved.positions += np.array([0.37, -1.2, 2.9])
    moved.wrap()
    out2 = short_range(moved.positions, moved.numbers, moved.cell.array, moved.pbc)
    assert out2["energy"] == pytest.approx(out["energy"], rel=1e-12)
    np.testing.assert_allclose(out2["forces"], out["forces"], atol=1e-10)
    np.testing.assert_allclose(out["forces"].sum(axis=0), 0.0, atol=1e-10)
    # Permutation: reorder the atoms, the per-atom results follow.
    perm = np.random.default_rng(0).permutation(len(atoms))
    out3 = short_range(atoms.positions[perm], atoms.numbers[perm], atoms.cell.array, atoms.pbc)
    np.testing.assert_allclose(out3["energies"], out["energies"][perm], atol=1e-12)
    np.testing.assert_allclose(out3["forces"], out["forces"][perm], atol=1e-10)


def test_cluster_forces_match_finite_differences():
    rng = np.random.default_rng(7)
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    atoms.positions += rng.normal(scale=0.15, size=atoms.positions.shape)
    atoms.pbc = False
    zero = np.zeros((3, 3))

    def energy(pos):
        return short_range(pos, atoms.numbers, zero, atoms.pbc)["energy"]

    out = short_range(atoms.positions, atoms.numbers, zero, atoms.pbc)
    h = 1e-5
    for a in (0, 3, 6):
        for k in range(3):
            plus, minus = atoms.positions.copy(), atoms.positions.copy()
            plus[a, k] += h
            minus[a, k] -= h
            fd = -(energy(plus) - energy(minus)) / (2 * h)
            assert out["forces"][a, k] == pytest.approx(fd, abs=2e-8)


def test_charges_are_plus_minus_one():
    np.testing.assert_array_equal(ionic_charges(np.array([11, 17, 17, 11])), [1, -1, -1, 1])


def test_bad_input_is_rejected_with_clear_messages():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    args = (atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc)
    with pytest.raises(ValueError, match=r"atoms: .*knows only Na and Cl, got \['K'\]"):
        short_range(atoms.positions, np.array([11, 17, 19, 17, 11, 17, 11, 17]), *args[2:])
    with pytest.raises(ValueError, match="cutoff must be a positive number of Å, got -1"):
        short_range(*args, cutoff=-1.0)
    with pytest.raises(ValueError, match=r"switch_width must be in \(0, cutoff=9.0\]"):
        short_range(*args, switch_width=10.0)
    bad = atoms.positions.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="positions: expected finite coordinates"):
        short_range(bad, *args[1:])
    close = atoms.positions.copy()
    close[1] = close[0] + [0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"atoms 0 and 1 are 0.500 Å apart"):
        short_range(close, *args[1:])


def test_parameters_are_a_frozen_dataclass():
    assert isinstance(NACL, TosiFumiParameters)
    with pytest.raises(AttributeError):
        NACL.rho = 0.3  # type: ignore[misc]
