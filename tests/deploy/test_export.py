"""The exported model (metatomic TorchScript file) equals the Python model.

Fast tests check the two TorchScript twins (network, Coulomb sum) against the eager
modules on random structures of every periodicity; the slow test exports a model with
the ``hybridpot export`` command and evaluates the file in a subprocess where
``import hybridpot`` fails (``run_exported.py``), on a bulk cell, a charged cell, a slab
and a molecule, then runs a short NVE trajectory with it.
"""

import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import graph_from_atoms
from hybridpot.electrostatics import Electrostatics
from hybridpot.electrostatics.induction import induction_field
from hybridpot.electrostatics.scriptable import ScriptableCoulomb
from hybridpot.electrostatics.scriptable_induction import ScriptableInduction
from hybridpot.nn.scriptable import ScriptableNetwork
from hybridpot.testing.network import small_network
from hybridpot.testing.structures import random_structure, small_model_config
from hybridpot.testing.tolerances import tolerances

metatomic = pytest.importorskip(
    "metatomic.torch", reason="metatomic-torch is not installed (pip install hybridpot[deploy])"
)

TOL = tolerances(torch.float64)
HERE = Path(__file__).parent

#: bulk, charged bulk, slab (vacuum along z), charged molecule
STRUCTURES = [
    dict(seed=1, n=8),
    dict(seed=2, n=9, charge=1.0),
    dict(seed=3, n=8, pbc=(True, True, False)),
    dict(seed=4, n=6, pbc=(False, False, False), charge=-1.0),
]


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.mark.parametrize(
    "overrides",
    [{}, dict(charge_projection="weighted", self_connection="linear", product=False)],
)
def test_scriptable_network_equals_eager(overrides):
    network = small_network(**overrides)
    scripted = torch.jit.script(ScriptableNetwork(network))
    for options in STRUCTURES:
        atoms = random_structure(**options)
        graph = graph_from_atoms(atoms, cutoff=network.cutoff)
        vectors = graph.edge_vectors(graph.positions, graph.cell)
        total = torch.tensor([atoms.info["charge"]], dtype=torch.float64)
        expected = network(graph.numbers, graph.edge_index, vectors, graph.batch, 1, total)
        species = scripted.species_index(graph.numbers)
        energies, charges = scripted(species, graph.edge_index, vectors, graph.batch, 1, total)
        assert _relative(energies.detach(), expected[keys.ENERGIES_SHORT].detach()) < TOL.exact
        assert _relative(charges.detach(), expected[keys.CHARGES].detach()) < TOL.exact


def test_scriptable_network_names_unknown_elements():
    scripted = torch.jit.script(ScriptableNetwork(small_network()))
    with pytest.raises(Exception, match="elements that the model does not know"):
        scripted.species_index(torch.tensor([1, 92]))


@pytest.mark.parametrize(
    "sigma_q, method", [(0.0, "auto"), (0.6, "auto"), (0.0, "p3m"), (0.4, "pme")]
)
def test_scriptable_coulomb_equals_electrostatics(sigma_q, method):
    """Same parameters, same pairs, same mesh: equal to rounding, gradients included."""
    reference = Electrostatics(sigma_q=sigma_q, method=method, accuracy=1e-6)
    scripted = torch.jit.script(
        ScriptableCoulomb(sigma_q, method, reference.accuracy, reference.overrides)
    )
    rng = np.random.default_rng(7)
    for options in STRUCTURES:
        atoms = random_structure(**options)
        n = len(atoms)
        charges = rng.normal(0, 1, n)
        charges += (atoms.info["charge"] - charges.sum()) / n
        positions = torch.tensor(atoms.positions, requires_grad=True)
        cell = torch.tensor(atoms.cell.array, requires_grad=True)
        pbc = torch.tensor(atoms.pbc)
        q = torch.tensor(charges, requires_grad=True)
        expected = reference(positions, cell[None], pbc[None], q, torch.zeros(n, dtype=torch.long))
        got = scripted(positions, cell, pbc, q)
        assert _relative(got.detach(), expected.detach()) < TOL.exact
        inputs = (positions, q) if not atoms.pbc.any() else (positions, cell, q)
        grads_expected = torch.autograd.grad(expected.sum(), inputs)
        grads_got = torch.autograd.grad(got.sum(), inputs)
        for g, e in zip(grads_got, grads_expected):
            assert _relative(g, e) < TOL.exact


@pytest.mark.parametrize("sigma_q, method", [(0.0, "auto"), (0.6, "p3m")])
def test_scriptable_induction_field_equals_eager(sigma_q, method):
    """The exported field of the charges (screened inside the cutoff) equals the eager
    one to rounding, and so do its gradients w.r.t. positions, cell and charges (the
    engine differentiates the energy through it)."""
    reference = Electrostatics(sigma_q=sigma_q, method=method, accuracy=1e-6)
    cutoff, degree = 3.0, 6
    alpha = torch.tensor([0.7, 1.9], dtype=torch.float64)
    scripted = torch.jit.script(
        ScriptableInduction(
            sigma_q, method, reference.accuracy, reference.overrides, alpha, cutoff, degree
        )
    )
    rng = np.random.default_rng(8)
    for options in STRUCTURES:
        atoms = random_structure(**options)
        n = len(atoms)
        graph = graph_from_atoms(atoms, cutoff=cutoff)
        assert graph.edge_index.shape[1] > 0  # the screening has pairs to act on
        charges = rng.normal(0, 1, n)
        positions = torch.tensor(atoms.positions, requires_grad=True)
        cell = torch.tensor(atoms.cell.array, requires_grad=True)
        pbc = torch.tensor(atoms.pbc)
        q = torch.tensor(charges, requires_grad=True)
        vectors = graph.edge_vectors(positions, cell[None])
        batch = torch.zeros(n, dtype=torch.long)
        plan = graph.coulomb_plan(reference)
        expected = induction_field(
            reference, plan, positions, cell[None], pbc[None], batch, q,
            graph.edge_index, vectors, cutoff, degree,
        )  # fmt: skip
        got = scripted.field(positions, cell, pbc, q, graph.edge_index, vectors)
        assert float(expected.detach().abs().max()) > 1e-3
        assert _relative(got.detach(), expected.detach()) < TOL.exact
        inputs = (positions, q) if not atoms.pbc.any() else (positions, cell, q)
        weights = torch.tensor(rng.normal(0, 1, (n, 3)))  # a generic scalar of the field
        # the two share the edge vectors' graph: keep it for the second
        grads_expected = torch.autograd.grad((weights * expected).sum(), inputs, retain_graph=True)
        grads_got = torch.autograd.grad((weights * got).sum(), inputs)
        for g, e in zip(grads_got, grads_expected):
            assert _relative(g, e) < TOL.exact
        species = torch.arange(n) % 2
        energies = scripted(positions, cell, pbc, q, species, graph.edge_index, vectors)
        squared = (expected.detach() ** 2).sum(-1)
        closed_form = -0.5 * keys.COULOMB_CONSTANT * alpha[species] * squared
        assert _relative(energies.detach(), closed_form) < TOL.exact


def test_scriptable_induction_restores_the_grad_mode():
    """Called with gradients off (an engine asking for the energy only), the module turns
    them on for the field and off again afterwards; the result is the same."""
    alpha = torch.tensor([1.0, 1.0], dtype=torch.float64)
    scripted = torch.jit.script(ScriptableInduction(0.0, "auto", 1e-6, {}, alpha, 3.0, 6))
    atoms = random_structure(**STRUCTURES[0])
    graph = graph_from_atoms(atoms, cutoff=3.0)
    arguments = (
        torch.tensor(atoms.positions),
        torch.tensor(atoms.cell.array),
        torch.tensor(atoms.pbc),
        torch.tensor(np.random.default_rng(0).normal(0, 1, len(atoms))),
        torch.zeros(len(atoms), dtype=torch.long),
        graph.edge_index,
        graph.edge_vectors(graph.positions, graph.cell),
    )
    with_grad = scripted(*arguments)
    with torch.no_grad():
        without_grad = scripted(*arguments)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    # equal to rounding (TorchScript's profiling executor may fuse the second call)
    torch.testing.assert_close(without_grad, with_grad, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="polarizabilities must be a 1-D tensor of values >= 0"):
        ScriptableInduction(0.0, "auto", 1e-6, {}, torch.tensor([-1.0]), 3.0, 6)


@pytest.mark.parametrize(
    "method, sigma_q, overrides",
    [
        ("pme", 0.0, {}),
        ("p3m", 0.7, {}),
        ("pme", 0.5, {"smearing": 2.0}),
        ("pme", 0.0, {"real_space_cutoff": 9.0, "interpolation_nodes": 5}),
        ("p3m", 0.0, {"mesh_spacing": 0.8, "slab_gap": 20.0}),
    ],
)
def test_scriptable_tuning_picks_the_python_parameters(method, sigma_q, overrides):
    """Exactly the same numbers (not merely close): same formulas, same constants."""
    from hybridpot.electrostatics import slab, tuning
    from hybridpot.electrostatics.scriptable_tuning import ScriptableTuning

    clean = tuning.validate_overrides(overrides, method)
    scripted = torch.jit.script(ScriptableTuning(sigma_q, method, 1e-5, clean))
    rng = np.random.default_rng(3)
    for _ in range(5):
        cell = np.diag(rng.uniform(8, 30, 3)) + rng.normal(0, 1, (3, 3))
        n = int(rng.integers(2, 5000))
        volume = abs(float(np.linalg.det(cell)))
        expected = tuning.choose_parameters(
            volume, n, method=method, accuracy=1e-5, sigma_q=sigma_q, overrides=clean
        )
        smearing, cutoff, spacing = scripted.choose_parameters(volume, n)
        assert (smearing, cutoff, spacing) == (
            expected.smearing,
            expected.real_space_cutoff,
            expected.mesh_spacing,
        )
        lengths = [float(x) for x in np.linalg.norm(cell, axis=1)]
        assert tuple(scripted.mesh_shape(lengths, spacing)) == expected.mesh_shape(cell)
        d = (volume / n) ** (1 / 3)
        gap = scripted.slab_gap(torch.tensor(cell[0]), torch.tensor(cell[1]), n, d, cutoff)
        if "slab_gap" in clean:
            assert gap == clean["slab_gap"]
        else:
            # equal to rounding (NumPy and torch compute the area |a1 x a2| differently)
            expected_gap = slab.choose_gap(cell[0], cell[1], n, d, 1e-5, cutoff, sigma_q)
            assert gap == pytest.approx(expected_gap, rel=1e-14)


def test_export_refuses_what_it_cannot_export(tmp_path):
    from hybridpot.model.export import export_model

    model = hybridpot.build_model(small_model_config(coulomb_method="ewald"))
    with pytest.raises(ValueError, match="coulomb_method 'ewald' cannot be exported"):
        export_model(model, tmp_path / "x.pt")
    with pytest.raises(TypeError, match="model must be a HybridModel"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    qeq = hybridpot.build_model(small_model_config(charge_model="qeq"))
    with pytest.raises(ValueError, match="charge_model='qeq' cannot be exported"):
        export_model(qeq, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.slow  # ~40-90 s: TorchScript export, a fresh interpreter, 4 structures + NVE
def test_exported_file_runs_without_hybridpot(tmp_path):
    torch.manual_seed(0)
    model = hybridpot.build_model(small_model_config())
    model_file = tmp_path / "model.pt"
    hybridpot.save_model(model, model_file, {"test": "provenance"})
    exported = tmp_path / "model-deployed.pt"
    from hybridpot.cli import main

    assert main(["export", str(model_file), "-o", str(exported), "--author", "tester"]) == 0

    frames = [random_structure(**options) for options in STRUCTURES]
    structures = tmp_path / "structures.extxyz"
    ase.io.write(structures, frames)
    frames = ase.io.read(structures, ":")  # what the subprocess reads, digit for digit
    out = tmp_path / "out.npz"
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "run_exported.py"),
            str(exported),
            str(structures),
            str(out),
            "--nve",
            "100",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    got = np.load(out)

    calculator = hybridpot.HybridCalculator(model=model)
    for k, atoms in enumerate(frames):
        atoms.calc = calculator
        energy = atoms.get_potential_energy()
        assert abs(got["energy"][k] - energy) < TOL.exported * abs(energy)
        assert _relative(got[f"forces_{k}"], atoms.get_forces()) < TOL.exported
        assert _relative(got[f"charges_{k}"], calculator.get_property("charges", atoms)) < (
            TOL.exported
        )
        if atoms.pbc.all():
            assert _relative(got["stress"][k], atoms.get_stress()) < TOL.exported

    # 100 velocity-Verlet steps of 0.5 fs at ~300 K: total energy conserved to a small
    # fraction of the kinetic energy (k_B T per atom ~ 0.026 eV; measured spread 4e-8)
    total = got["nve_total"] / len(frames[0])
    assert np.isfinite(total).all()
    assert np.ptp(total) < 1e-3, f"NVE total energy spread {np.ptp(total):.2e} eV/atom"

    metadata = metatomic.load_atomistic_model(str(exported)).metadata()
    assert metadata.authors == ["tester"]
    assert "provenance" in metadata.extra["hybridpot.provenance"]
    assert "licence" in metadata.extra


@pytest.mark.slow  # ~20-40 s: TorchScript export
@pytest.mark.parametrize("induction", [False, True])
def test_float32_export_equals_float32_calculator(induction):
    from metatomic_ase import MetatomicCalculator

    torch.manual_seed(1)
    config = small_model_config(coulomb_accuracy=1e-4, induction=induction)
    model = hybridpot.build_model(config).to(torch.float32)
    exported = MetatomicCalculator(hybridpot.export_model(model))
    python = hybridpot.HybridCalculator(model=model, dtype="float32")
    tol = tolerances(torch.float32).exported
    for options in STRUCTURES[:2]:
        atoms = random_structure(**options)
        expected = atoms.copy()
        expected.calc = python
        atoms.calc = exported
        energy = expected.get_potential_energy()
        assert abs(atoms.get_potential_energy() - energy) < tol * abs(energy)
        assert _relative(atoms.get_forces(), expected.get_forces()) < tol


@pytest.mark.parametrize("split", ["cutoff", "none"])
def test_exported_model_keeps_the_coulomb_split(split, tmp_path):
    # Charges of order 1 e (charge_init_scale 1), so the screened pairs carry real energy.
    # The file is written and read back: TorchScript compiles the model on the way.
    from metatomic_ase import MetatomicCalculator

    torch.manual_seed(2)
    config = small_model_config(coulomb_split=split, charge_init_scale=1.0)
    model = hybridpot.build_model(config)
    other = "none" if split == "cutoff" else "cutoff"
    torch.manual_seed(2)
    twin = hybridpot.build_model(small_model_config(coulomb_split=other, charge_init_scale=1.0))
    hybridpot.export_model(model, tmp_path / "model-deployed.pt")
    exported = MetatomicCalculator(str(tmp_path / "model-deployed.pt"))
    python = hybridpot.HybridCalculator(model=model)
    for options in (STRUCTURES[0], STRUCTURES[3]):
        atoms = random_structure(**options)
        expected, wrong = atoms.copy(), atoms.copy()
        expected.calc, wrong.calc = python, hybridpot.HybridCalculator(model=twin)
        atoms.calc = exported
        energy = expected.get_potential_energy()
        # The file reproduces the model's own split, far closer than the other split.
        gap = abs(wrong.get_potential_energy() - energy)
        assert gap > 1e-4
        assert abs(atoms.get_potential_energy() - energy) < min(1e-3 * gap, 1e-8 * abs(energy))
        assert _relative(atoms.get_forces(), expected.get_forces()) < TOL.exported


def test_exported_model_keeps_the_induction(tmp_path):
    """An ``induction: true`` model exports its induction energy with the trained
    polarisabilities: the file equals the Python model to 1e-8 in energy, forces and
    stress on a bulk cell, a charged cell, a slab and a charged molecule, far closer than
    the induction energy itself."""
    from metatomic_ase import MetatomicCalculator

    torch.manual_seed(3)
    model = hybridpot.build_model(small_model_config(induction=True, charge_init_scale=1.0))
    with torch.no_grad():  # distinct, sizeable polarisabilities (1.3-3.0 Å³)
        model.polarizability_raw.copy_(torch.linspace(1.0, 3.0, len(model.model_config.elements)))
    hybridpot.export_model(model, tmp_path / "model-deployed.pt")
    exported = MetatomicCalculator(str(tmp_path / "model-deployed.pt"))
    python = hybridpot.HybridCalculator(model=model)
    for options in STRUCTURES:
        atoms = random_structure(**options)
        expected = atoms.copy()
        expected.calc, atoms.calc = python, exported
        energy = expected.get_potential_energy()
        induction = python.get_property(keys.ENERGY_INDUCTION, expected)
        assert abs(induction) > 1e-4
        assert abs(atoms.get_potential_energy() - energy) < min(
            1e-3 * abs(induction), TOL.exported * abs(energy)
        )
        assert _relative(atoms.get_forces(), expected.get_forces()) < TOL.exported
        if atoms.pbc.all():
            assert _relative(atoms.get_stress(), expected.get_stress()) < TOL.exported
