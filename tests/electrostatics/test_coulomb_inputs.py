"""Bad input gets an error naming the problem; nothing returns NaN silently."""

import numpy as np
import pytest
import torch
from es_helpers import make_slab, run

from hybridpot.electrostatics import Electrostatics, coulomb
from hybridpot.testing import random_ionic_cell


def _atoms(pbc=True):
    atoms = random_ionic_cell(8, np.random.default_rng(51), density=0.03)
    atoms.pbc = pbc
    return atoms


def _module_inputs(atoms, dtype=torch.float64):
    n = len(atoms)
    return (
        torch.tensor(atoms.positions, dtype=dtype),
        torch.tensor(np.asarray(atoms.cell), dtype=dtype)[None],
        torch.tensor([list(atoms.pbc)]),
        torch.tensor(atoms.get_initial_charges(), dtype=dtype),
        torch.zeros(n, dtype=torch.int64),
    )


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("pbc", [True, False])
def test_non_finite_positions(bad, pbc):
    atoms = _atoms(pbc)
    atoms.positions[3, 1] = bad
    with pytest.raises(ValueError, match=r"positions must be finite"):
        run(atoms)


def test_non_finite_charges():
    atoms = _atoms()
    q = atoms.get_initial_charges()
    q[2] = np.nan
    with pytest.raises(ValueError, match=r"charges must be finite.*atom 2"):
        run(atoms, q)
    inputs = list(_module_inputs(atoms))
    inputs[3][0] = float("inf")
    with pytest.raises(ValueError, match=r"charges must be finite"):
        Electrostatics()(*inputs)


def test_singular_cell():
    atoms = _atoms()
    cell = np.asarray(atoms.cell).copy()
    cell[2] = cell[0] + cell[1]
    atoms.cell = cell
    with pytest.raises(ValueError, match=r"cell of structure 0 is singular"):
        run(atoms)
    atoms.cell = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"cell of structure 0 is singular"):
        run(atoms)


@pytest.mark.parametrize("pbc", [[True, False, False], [False, True, False], [False, False, True]])
def test_one_dimensional_periodicity_is_rejected(pbc):
    atoms = _atoms(pbc)
    with pytest.raises(ValueError, match=r"pbc \[.*\] of structure 0 is not supported.*1D"):
        run(atoms)


def test_charges_wrong_shape_or_dtype():
    atoms = _atoms()
    q = atoms.get_initial_charges()
    with pytest.raises(ValueError, match=r"charges must have shape \(N,\) = \(8,\).*\(7,\)"):
        run(atoms, q[:7])
    with pytest.raises(ValueError, match=r"charges must have shape"):
        run(atoms, q[:, None])
    with pytest.raises(TypeError, match=r"charges must be an array of real numbers"):
        run(atoms, ["a"] * 8)
    with pytest.raises(TypeError, match=r"charges must be an array of real numbers"):
        run(atoms, q.astype(complex))
    positions, cell, pbc, charges, batch = _module_inputs(atoms)
    module = Electrostatics()
    with pytest.raises(TypeError, match=r"charges must have the dtype of positions"):
        module(positions, cell, pbc, charges.float(), batch)
    with pytest.raises(TypeError, match=r"charges must have the dtype of positions"):
        module(positions, cell, pbc, charges.long(), batch)
    with pytest.raises(ValueError, match=r"charges must have shape \(N,\)"):
        module(positions, cell, pbc, charges[:, None], batch)


def test_module_shapes_and_types():
    positions, cell, pbc, charges, batch = _module_inputs(_atoms())
    module = Electrostatics()
    with pytest.raises(ValueError, match=r"positions must have shape \(N, 3\)"):
        module(positions[:, :2], cell, pbc, charges, batch)
    with pytest.raises(TypeError, match=r"positions must be float32 or float64"):
        module(positions.long(), cell, pbc, charges, batch)
    with pytest.raises(ValueError, match=r"cell must have shape \(B, 3, 3\)"):
        module(positions, cell[0], pbc, charges, batch)
    with pytest.raises(ValueError, match=r"pbc must be a bool tensor"):
        module(positions, cell, pbc.long(), charges, batch)
    with pytest.raises(ValueError, match=r"batch values must be in \[0, 1\)"):
        module(positions, cell, pbc, charges, batch + 1)
    with pytest.raises(TypeError, match=r"cell must be a torch.Tensor"):
        module(positions, np.asarray(cell), pbc, charges, batch)


@pytest.mark.parametrize("kind", ["bulk", "molecule", "slab"])
def test_coincident_point_charges(kind):
    atoms = make_slab(_atoms()) if kind == "slab" else _atoms(kind == "bulk")
    atoms.positions[5] = atoms.positions[2]
    with pytest.raises(ValueError, match=r"atoms 2 and 5 of structure 0 coincide"):
        run(atoms)


def test_coincident_with_an_image():
    atoms = _atoms()
    atoms.positions[4] = atoms.positions[1] + np.asarray(atoms.cell)[0]
    with pytest.raises(ValueError, match=r"atoms 1 and 4 of structure 0 coincide.*cell shift"):
        run(atoms)


def test_bad_options():
    atoms = _atoms()
    q = atoms.get_initial_charges()
    with pytest.raises(ValueError, match=r"method must be one of .*'pme'.*got 'fmm'"):
        coulomb(atoms, q, method="fmm")
    with pytest.raises(ValueError, match=r"method 'direct' is only for non-periodic"):
        coulomb(atoms, q, method="direct")
    with pytest.raises(TypeError, match=r"unknown parameter 'cutoff'"):
        coulomb(atoms, q, cutoff=5.0)
    with pytest.raises(ValueError, match=r"real_space_cutoff must be a positive finite"):
        coulomb(atoms, q, real_space_cutoff=-1.0)
    with pytest.raises(ValueError, match=r"interpolation_nodes for method 'p3m' must be in 2..5"):
        coulomb(atoms, q, method="p3m", interpolation_nodes=7)
    with pytest.raises(ValueError, match=r"smearing must be > sqrt\(2\) \* sigma_q"):
        coulomb(atoms, q, sigma_q=1.0, smearing=1.0)
    with pytest.raises(ValueError, match=r"sigma_q must be a finite width >= 0"):
        coulomb(atoms, q, sigma_q=-0.1)
    with pytest.raises(ValueError, match=r"accuracy .* must be in \(0, 1\)"):
        coulomb(atoms, q, accuracy=0.0)
    with pytest.raises(TypeError, match=r"dtype must be torch.float32 or torch.float64"):
        coulomb(atoms, q, dtype=torch.float16)
    with pytest.raises(TypeError, match=r"atoms must be an ase.Atoms"):
        coulomb(atoms.positions, q)


def test_mesh_too_large_is_refused():
    atoms = _atoms()
    with pytest.raises(ValueError, match=r"mesh would have .* points"):
        run(atoms, mesh_spacing=1e-3)


def test_molecule_ignores_cell_and_method():
    atoms = _atoms(False)
    atoms.cell = np.zeros((3, 3))
    direct = run(atoms)
    for method in ("pme", "p3m", "ewald", "direct"):
        assert run(atoms, method=method)["energy"] == direct["energy"]


@pytest.mark.parametrize(
    "method, pbc, expected",
    [
        ("auto", (True, True, True), "pme"),
        ("ewald", (True, True, True), "ewald"),
        ("p3m", (True, False, True), "slab+p3m"),
        ("auto", (True, True, False), "slab+pme"),
        ("ewald", (False, False, False), "direct"),
        ("direct", (False, False, False), "direct"),
    ],
)
def test_route_names_the_sum_each_periodicity_gets(method, pbc, expected):
    assert Electrostatics(method=method).route(pbc) == expected


def test_route_rejects_what_the_sum_rejects():
    with pytest.raises(ValueError, match="1D periodicity"):
        Electrostatics().route((True, False, False))
    with pytest.raises(ValueError, match="only for non-periodic"):
        Electrostatics(method="direct").route((True, True, True))
    with pytest.raises(ValueError, match="three bools"):
        Electrostatics().route((True, True))
