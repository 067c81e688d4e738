"""Against the independent NumPy Ewald sum (hybridpot.testing.ewald_sum).

Random triclinic cells with random (normal) charges and unwrapped positions, one of them
strongly charged. Energy: rtol 1e-6 at the default target 1e-5 (tolerance table,
``reference_energy``), rtol = the target at 1e-3. Forces (relative RMS), stress and the
potential dE/dq (relative to their largest component): within the accuracy target, at a
loose (1e-3) and a tight (1e-5) target, for every method.
"""

import numpy as np
import pytest
from es_helpers import rel_max, rel_rms, run

from hybridpot.testing import ewald_sum, random_ionic_cell, tolerances

TOL = tolerances(np.float64)


def _cells():
    rng = np.random.default_rng(2024)
    return {
        "triclinic": random_ionic_cell(90, rng, density=0.04),
        "cubic": random_ionic_cell(70, rng, triclinic=False, density=0.03),
        # Net charge 25 e on 60 atoms of charges ~N(0, 1): the background term dominates
        # the energy (it is ~ -1e3 eV here).
        "charged": random_ionic_cell(60, rng, net_charge=25.0, density=0.05),
        "sparse": random_ionic_cell(24, rng, density=0.004),
    }


CELLS = _cells()


@pytest.fixture(scope="module")
def references():
    return {
        name: ewald_sum(atoms.positions, atoms.get_initial_charges(), np.asarray(atoms.cell))
        for name, atoms in CELLS.items()
    }


@pytest.mark.parametrize("accuracy", [1e-3, 1e-5])
@pytest.mark.parametrize("method", ["pme", "p3m", "ewald"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_against_numpy_ewald(references, name, method, accuracy):
    atoms = CELLS[name]
    ref = references[name]
    result = run(atoms, method=method, accuracy=accuracy)
    energy_tol = TOL.reference_energy if accuracy <= 1e-5 else accuracy
    assert result["energy"] == pytest.approx(ref["energy"], rel=energy_tol)
    assert rel_rms(result["forces"], ref["forces"]) < accuracy
    assert rel_max(result["stress"], ref["stress"]) < accuracy
    assert rel_max(result["potential"], ref["potential"]) < accuracy


def test_charged_cell_background_is_large():
    # The charged test cell really exercises the background term: without it the
    # energy would differ by far more than the tolerance.
    atoms = CELLS["charged"]
    q = atoms.get_initial_charges()
    volume = atoms.get_volume()
    ref = ewald_sum(atoms.positions, q, np.asarray(atoms.cell))
    alpha = ref["alpha"]
    background = -np.pi * 14.399645478425667 * q.sum() ** 2 / (2 * alpha**2 * volume)
    assert abs(background) > 1e3 * TOL.reference_energy * abs(ref["energy"])


def test_default_method_is_pme_and_accurate(references):
    atoms = CELLS["triclinic"]
    result = run(atoms)  # auto -> PME at accuracy 1e-5
    assert result["energy"] == pytest.approx(references["triclinic"]["energy"], rel=1e-6)
    assert rel_rms(result["forces"], references["triclinic"]["forces"]) < 1e-5
