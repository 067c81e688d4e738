"""The contract: the MEASURED relative RMS force error is below ``accuracy``.

Measured against the independent NumPy Ewald sum on the cells the issue names: a cubic,
dense +-1 ionic system at NaCl density (216 atoms of rock salt displaced by 0.3 Å RMS), a
triclinic rock-salt supercell, a random triclinic cell and a strongly charged cell, at the
targets 1e-3 and 1e-5, for every periodic method. Also a slab against the exact 2D sum.
"""

import numpy as np
import pytest
from es_helpers import make_slab, rel_rms, run

from hybridpot.testing import (
    ewald_sum,
    random_ionic_cell,
    rocksalt_supercell,
    slab_ewald_sum,
)


def _cells():
    rng = np.random.default_rng(11)
    return {
        "rocksalt_cubic_216": rocksalt_supercell(3, rng),
        "rocksalt_triclinic_96": rocksalt_supercell([[2, 1, 0], [0, 2, 1], [1, 0, 2]], rng),
        "random_triclinic_150": random_ionic_cell(150, rng, density=0.0446),
        "charged_triclinic_100": random_ionic_cell(100, rng, net_charge=30.0, density=0.03),
    }


CELLS = _cells()


@pytest.fixture(scope="module")
def reference_forces():
    return {
        name: ewald_sum(atoms.positions, atoms.get_initial_charges(), np.asarray(atoms.cell))[
            "forces"
        ]
        for name, atoms in CELLS.items()
    }


@pytest.mark.parametrize("accuracy", [1e-3, 1e-5])
@pytest.mark.parametrize("method", ["auto", "p3m", "ewald"])
@pytest.mark.parametrize("name", sorted(CELLS))
def test_measured_force_error_below_target(reference_forces, name, method, accuracy):
    forces = run(CELLS[name], method=method, accuracy=accuracy)["forces"]
    assert rel_rms(forces, reference_forces[name]) < accuracy


@pytest.mark.parametrize("accuracy", [1e-3, 1e-5])
def test_measured_slab_force_error_below_target(accuracy):
    rng = np.random.default_rng(12)
    slab = make_slab(rocksalt_supercell([[2, 0, 0], [1, 2, 0], [0, 0, 1]], rng), axis=2)
    q = slab.get_initial_charges()
    ref = slab_ewald_sum(slab.positions, q, np.asarray(slab.cell), slab.pbc)
    forces = run(slab, accuracy=accuracy)["forces"]
    assert rel_rms(forces, ref["forces"]) < accuracy


@pytest.mark.parametrize(
    ("method", "nodes", "accuracy"),
    [("pme", p, 1e-2) for p in (3, 4, 5, 6)]
    + [("p3m", p, 1e-2) for p in (3, 4)]
    + [("pme", 5, 1e-4), ("p3m", 4, 1e-4)],
)
@pytest.mark.parametrize("name", ["rocksalt_cubic_216", "random_triclinic_150"])
def test_other_interpolation_orders_meet_the_target(
    reference_forces, name, method, nodes, accuracy
):
    forces = run(CELLS[name], method=method, accuracy=accuracy, interpolation_nodes=nodes)
    assert rel_rms(forces["forces"], reference_forces[name]) < accuracy
