"""Slabs (one non-periodic axis): against the exact 2D sum and 3D sums with growing vacuum.

References are the independent NumPy sums (``ewald_sum``, ``slab_ewald_sum``,
``yeh_berkowitz_correction``); tolerances as in test_coulomb_reference.
"""

import math

import ase
import numpy as np
import pytest
from es_helpers import make_slab, rel_max, rel_rms, run, with_vacuum

from hybridpot.keys import COULOMB_CONSTANT
from hybridpot.testing import (
    ewald_sum,
    random_ionic_cell,
    slab_ewald_sum,
    tolerances,
    yeh_berkowitz_correction,
)
from hybridpot.testing.finite_differences import random_orthogonal, transformed

TOL = tolerances(np.float64)


def _neutral_slab(axis=2, seed=41, n=30, vacuum_row=0.0):
    bulk = random_ionic_cell(n, np.random.default_rng(seed), density=0.03)
    return make_slab(bulk, axis=axis, vacuum_row=vacuum_row)


@pytest.mark.parametrize("accuracy", [1e-3, 1e-5])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slab_against_exact_2d_sum(axis, accuracy):
    slab = _neutral_slab(axis=axis, vacuum_row=25.0 if axis == 1 else 0.0)
    q = slab.get_initial_charges()
    ref = slab_ewald_sum(slab.positions, q, np.asarray(slab.cell), slab.pbc)
    result = run(slab, accuracy=accuracy)
    energy_tol = TOL.reference_energy if accuracy <= 1e-5 else accuracy
    assert result["energy"] == pytest.approx(ref["energy"], rel=energy_tol)
    assert rel_rms(result["forces"], ref["forces"]) < accuracy
    assert rel_max(result["potential"], ref["potential"]) < accuracy


def test_slab_3d_sum_with_growing_vacuum_converges():
    slab = _neutral_slab(seed=42)
    q = slab.get_initial_charges()
    result = run(slab, accuracy=1e-7)
    errors = []
    for vacuum in (4.0, 8.0, 16.0, 32.0):
        bulk = with_vacuum(slab, 2, vacuum)
        cell = np.asarray(bulk.cell)
        energy = ewald_sum(bulk.positions, q, cell)["energy"]
        energy += yeh_berkowitz_correction(bulk.positions, q, cell, axis=2)["energy"]
        errors.append(abs(energy - result["energy"]) / abs(result["energy"]))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[0] > 1e-4  # the vacuum matters at first ...
    assert errors[-1] < TOL.reference_energy  # ... and converges to our slab result


@pytest.mark.parametrize("sigma_q", [0.5, 1.2])
def test_charged_gaussian_slab_does_not_depend_on_gap(sigma_q):
    """A charged slab of Gaussian charges: the correction's second moment includes each
    cloud's spread sigma_q^2 along the normal; without it the energy moved by ~k Q^2
    sigma_q^2 / (A L) with the internal length (18 meV between gaps of 30 and 90 Å)."""
    bulk = random_ionic_cell(12, np.random.default_rng(44), net_charge=1.0, density=0.03)
    slab = make_slab(bulk, axis=2)
    energies = [
        run(slab, sigma_q=sigma_q, accuracy=1e-7, slab_gap=gap)["energy"]
        for gap in (30.0, 45.0, 90.0)
    ]
    assert energies[1] == pytest.approx(energies[0], rel=1e-8)
    assert energies[2] == pytest.approx(energies[0], rel=1e-8)


def test_charged_slab_converges_and_does_not_depend_on_gap():
    bulk = random_ionic_cell(24, np.random.default_rng(43), net_charge=3.0, density=0.03)
    slab = make_slab(bulk, axis=2)
    q = slab.get_initial_charges()
    total = q.sum()
    ours = [run(slab, accuracy=1e-7, slab_gap=gap)["energy"] for gap in (30.0, 45.0)]
    assert ours[1] == pytest.approx(ours[0], rel=1e-8)
    errors = []
    for vacuum in (4.0, 8.0, 16.0, 32.0):
        bulk3d = with_vacuum(slab, 2, vacuum)
        cell = np.asarray(bulk3d.cell)
        length = np.linalg.norm(cell[2])  # the vacuum row is along the normal n
        volume = abs(np.linalg.det(cell))
        z = bulk3d.positions @ (cell[2] / length)
        dipole = q @ z
        # Ballenegger, Arnold & Cerda (2009): charged-slab terms of the correction.
        correction = (2 * math.pi * COULOMB_CONSTANT / volume) * (
            dipole**2 - total * (q @ z**2) - total**2 * length**2 / 12
        )
        energy = ewald_sum(bulk3d.positions, q, cell)["energy"] + correction
        errors.append(abs(energy - ours[0]) / abs(ours[0]))
    assert all(b < a for a, b in zip(errors, errors[1:]))
    assert errors[-1] < TOL.reference_energy


def test_slab_orientation_does_not_matter():
    rng = np.random.default_rng(44)
    slab = _neutral_slab(seed=45)
    base = run(slab, accuracy=1e-7)
    rotation = random_orthogonal(rng, reflect=False)
    rotated = transformed(slab, rotation)
    other = run(rotated, accuracy=1e-7)
    assert other["energy"] == pytest.approx(base["energy"], rel=1e-8)
    assert rel_rms(other["forces"], base["forces"] @ rotation.T) < 1e-7
    # The same slab with the vacuum along the first row (axes permuted).
    permuted = ase.Atoms(
        numbers=slab.numbers,
        positions=slab.positions,
        cell=np.asarray(slab.cell)[[2, 0, 1]],
        pbc=[False, True, True],
    )
    assert run(permuted, slab.get_initial_charges(), accuracy=1e-7)["energy"] == pytest.approx(
        base["energy"], rel=1e-8
    )


def test_slab_rejects_oblique_vacuum_row_and_parallel_rows():
    slab = _neutral_slab(vacuum_row=20.0)
    cell = np.asarray(slab.cell).copy()
    cell[2] += 0.3 * cell[0]
    slab.cell = cell
    with pytest.raises(ValueError, match=r"non-periodic row 2 .* must be orthogonal"):
        run(slab)
    cell = np.asarray(slab.cell).copy()
    cell[1] = 2.0 * cell[0]
    slab.cell = cell
    with pytest.raises(ValueError, match=r"periodic rows \[0, 1\] .* not parallel"):
        run(slab)
