"""Fragment charge constraints: reading, batching, exact sums, no leak, gradients.

A fragment (molecule, ion) keeps its own total charge: the projection spreads each
fragment's excess over its own atoms only, so the charges of one molecule cannot depend on
a molecule beyond the network's reach.
"""

import ase
import ase.io
import numpy as np
import pytest
import torch

import hybridpot
from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms, split_graph
from hybridpot.data.dataset import graphs_from_structures
from hybridpot.data.fragments import check_fragments, fragments_from_atoms
from hybridpot.nn.readout import project_charges
from hybridpot.testing.structures import random_structure, small_model_config
from hybridpot.train.config import DataConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return hybridpot.build_model(small_model_config(charge_projection="weighted"))


def two_ions(gap: float) -> ase.Atoms:
    """Two Na/Cl clusters (4 atoms each) ``gap`` Å apart, fragments +1 and -1."""
    a = random_structure(1, n=4, pbc=(False,) * 3, scale=4.0)
    b = random_structure(2, n=4, pbc=(False,) * 3, scale=4.0)
    b.positions += [gap, 0.0, 0.0]
    atoms = a + b
    atoms.arrays["fragment"] = np.array([0] * 4 + [1] * 4)
    atoms.info["fragment_charges"] = [1.0, -1.0]
    atoms.info["charge"] = 0.0
    return atoms


def test_fragment_sums_are_exact_molecule_and_periodic(model):
    molecule = two_ions(12.0)
    bulk = random_structure(4, n=8, pbc=(True,) * 3, scale=5.0, charge=1.0)
    bulk.arrays["fragment"] = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    bulk.info["fragment_charges"] = [2.0, -0.5, -0.5]
    for atoms in (molecule, bulk):
        graph = graph_from_atoms(atoms, model.cutoff)
        q = model(graph)[keys.CHARGES].detach().numpy()
        ids = atoms.arrays["fragment"]
        for f, target in enumerate(atoms.info["fragment_charges"]):
            assert abs(q[ids == f].sum() - target) <= 1e-12
        # Not just the total: a per-structure projection would not hit each fragment.
        assert abs(q.sum() - atoms.info["charge"]) <= 1e-12


def test_no_charge_leaks_between_fragments_beyond_the_cutoff(model):
    """Deform molecule B (beyond the cutoff of A): A's charges stay bit-identical with
    fragments; with one projection per structure B's change leaks into A."""
    before = two_ions(12.0)
    after = before.copy()
    after.positions[4:] += np.random.default_rng(0).normal(0.0, 0.15, (4, 3))

    def charges_of_a(atoms, fragments: bool):
        atoms = atoms.copy()
        if not fragments:
            del atoms.arrays["fragment"]
            del atoms.info["fragment_charges"]
        return model(graph_from_atoms(atoms, model.cutoff))[keys.CHARGES].detach()[:4]

    assert torch.equal(charges_of_a(before, True), charges_of_a(after, True))
    leak = (charges_of_a(before, False) - charges_of_a(after, False)).abs().max()
    assert float(leak) > 1e-6


def test_projection_gradients_equal_finite_differences():
    gen = torch.Generator().manual_seed(0)
    n = 7
    q_tilde = torch.randn(n, dtype=torch.float64, generator=gen).requires_grad_(True)
    weights = (torch.rand(n, dtype=torch.float64, generator=gen) + 0.1).requires_grad_(True)
    group = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    charge = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64)
    probe = torch.randn(n, dtype=torch.float64, generator=gen)

    def objective(qt, w):
        q = project_charges(qt, w, group, 3, charge)
        return (probe * q).sum() + (q**3).sum()

    assert torch.autograd.gradcheck(objective, (q_tilde, weights), eps=1e-6, atol=1e-9)
    q = project_charges(q_tilde, weights, group, 3, charge)
    sums = torch.zeros(3, dtype=torch.float64).index_add(0, group, q)
    assert torch.allclose(sums, charge, rtol=0, atol=1e-14)


def test_model_charge_gradients_with_fragments_equal_finite_differences(model):
    atoms = two_ions(5.0)  # fragments within reach of each other
    graph = graph_from_atoms(atoms, model.cutoff)
    probe = torch.linspace(-1.0, 1.0, len(atoms), dtype=torch.float64)

    def objective(positions):
        moved = graph_from_atoms(
            ase.Atoms(atoms.numbers, positions=positions.detach().numpy()),
            model.cutoff,
            fragments=(atoms.arrays["fragment"], atoms.info["fragment_charges"]),
        )
        moved.positions = positions
        out = model(moved, compute_forces=False, compute_stress=False)
        return (probe * out[keys.CHARGES]).sum()

    positions = graph.positions.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(objective(positions), positions)
    h = 1e-5
    numeric = torch.zeros_like(grad)
    for i in range(len(atoms)):
        for c in range(3):
            plus, minus = positions.detach().clone(), positions.detach().clone()
            plus[i, c] += h
            minus[i, c] -= h
            numeric[i, c] = (objective(plus) - objective(minus)) / (2 * h)
    assert torch.allclose(grad, numeric, rtol=0, atol=1e-8 * float(grad.abs().max()) + 1e-12)


def test_batching_mixes_structures_with_and_without_fragments(model):
    with_fragments = two_ions(8.0)
    without = random_structure(6, n=6, pbc=(True,) * 3, scale=5.0, charge=-1.0)
    graphs = [graph_from_atoms(a, model.cutoff) for a in (without, with_fragments, without)]
    batch = batch_graphs(graphs)
    assert batch.fragment.tolist() == [0] * 6 + [1] * 4 + [2] * 4 + [3] * 6
    assert batch.fragment_charge.tolist() == [-1.0, 1.0, -1.0, -1.0]
    out = model(batch)
    start = 0
    for g in graphs:
        alone = model(g)
        n = g.num_nodes
        assert torch.allclose(out[keys.CHARGES][start : start + n], alone[keys.CHARGES], atol=1e-13)
        assert torch.allclose(out[keys.FORCES][start : start + n], alone[keys.FORCES], atol=1e-11)
        start += n
    parts = split_graph(batch)
    assert parts[1].fragment.tolist() == [0] * 4 + [1] * 4
    assert parts[1].fragment_charge.tolist() == [1.0, -1.0]
    assert parts[0].fragment.tolist() == [0] * 6
    assert parts[0].fragment_charge.tolist() == [-1.0]


def test_dimer_convention_split_index_and_charge_keys(tmp_path):
    atoms = two_ions(8.0)
    del atoms.arrays["fragment"]
    del atoms.info["fragment_charges"]
    atoms.info.update(indexB=4, chargeA=1, chargeB=-1)
    ids, charges = fragments_from_atoms(
        atoms, split_key="indexB", charges_key=["chargeA", "chargeB"]
    )
    assert ids.tolist() == [0] * 4 + [1] * 4 and charges.tolist() == [1.0, -1.0]
    config = DataConfig(fragment_split_key="indexB", fragment_charges_key=["chargeA", "chargeB"])
    (graph,) = graphs_from_structures([atoms], 3.5, config)
    assert graph.fragment.tolist() == ids.tolist()
    assert graph.fragment_charge.tolist() == [1.0, -1.0]
    # Default keys find nothing on this structure: no fragments, not an error.
    (plain,) = graphs_from_structures([atoms], 3.5)
    assert plain.fragment is None


def test_fragments_survive_an_extxyz_round_trip(tmp_path):
    atoms = two_ions(8.0)
    path = tmp_path / "ions.xyz"
    ase.io.write(path, atoms)
    (graph,) = graphs_from_structures(ase.io.read(path, ":"), 3.5)
    assert graph.fragment.tolist() == atoms.arrays["fragment"].tolist()


@pytest.mark.parametrize(
    "ids, charges, total, message",
    [
        ([0, 0, 1], [1.0], None, "2 fragment charges are needed"),
        ([0, 0, 2], [1.0, 0.0, -1.0], None, r"fragments \[1\] have no atoms"),
        ([0, 1], [1.0, 1.0], 0.0, "add up to"),
        ([0, -1], [1.0], None, ">= 0"),
        ([0.5, 1], [1.0, 0.0], None, "integers"),
        ([0, 1, 1], [1.0, np.nan], None, "finite"),
        ([0, 1], [1.0, 0.0], None, r"shape \(3,\)"),
    ],
)
def test_bad_fragments_are_named(ids, charges, total, message):
    n = 3 if message.startswith("shape") else len(ids)
    with pytest.raises(ValueError, match=message):
        check_fragments(ids, charges, n, total, where="data.xyz[4]")


def test_fragment_ids_without_charges_and_the_reverse_are_errors():
    atoms = two_ions(8.0)
    del atoms.info["fragment_charges"]
    with pytest.raises(ValueError, match="no fragment charges"):
        fragments_from_atoms(atoms)
    atoms = two_ions(8.0)
    del atoms.arrays["fragment"]
    with pytest.raises(ValueError, match="no fragment ids"):
        fragments_from_atoms(atoms)


@pytest.mark.parametrize("split", [0, 8, 2.5, True, "x"])
def test_a_bad_split_index_is_named(split):
    atoms = two_ions(8.0)
    del atoms.arrays["fragment"]
    atoms.info.update(indexB=split, chargeA=1, chargeB=-1)
    with pytest.raises(ValueError, match=r"split index info\['indexB'\] must be an integer"):
        fragments_from_atoms(atoms, split_key="indexB", charges_key=["chargeA", "chargeB"])


# ---------------------------------------------------------------- keys kept in the model file
DIMER_KEYS = {"fragment_split_key": "indexB", "fragment_charges_key": ["chargeA", "chargeB"]}


def dimer_file_structure(gap: float = 8.0) -> ase.Atoms:
    """``two_ions`` with its fragments under the LODE dimer keys only."""
    atoms = two_ions(gap)
    del atoms.arrays["fragment"]
    del atoms.info["fragment_charges"]
    atoms.info.update(indexB=4, chargeA=1.0, chargeB=-1.0)
    return atoms


def test_the_model_file_keeps_the_fragment_keys_and_the_calculator_reads_them(model, tmp_path):
    """A model trained on the dimer keys evaluates dimer files with them, without being
    told: the charges of each monomer sum to its own total, and the energy is the one of
    the same fragments given under the default keys."""
    path = tmp_path / "dimer_model.pt"
    hybridpot.save_model(model, path, fragment_keys=DIMER_KEYS)
    loaded = hybridpot.load_model(path)
    assert loaded.fragment_keys == {"fragment_key": "fragment", **DIMER_KEYS}

    atoms = dimer_file_structure()
    atoms.calc = hybridpot.HybridCalculator(model=loaded)
    q = atoms.get_charges()
    assert abs(q[:4].sum() - 1.0) <= 1e-12 and abs(q[4:].sum() + 1.0) <= 1e-12
    explicit = two_ions(8.0)  # the same fragments under the default keys
    explicit.calc = hybridpot.HybridCalculator(model=model)
    assert atoms.get_potential_energy() == pytest.approx(explicit.get_potential_energy(), abs=1e-12)
    # Without the stored keys the split would be ignored: a different answer.
    plain = dimer_file_structure()
    plain.calc = hybridpot.HybridCalculator(model=model)
    assert abs(plain.get_charges()[:4].sum() - 1.0) > 1e-3

    # A key given to the calculator replaces the stored one.
    renamed = dimer_file_structure()
    renamed.info["split"] = renamed.info.pop("indexB")
    renamed.calc = hybridpot.HybridCalculator(model=loaded, fragment_split_key="split")
    assert renamed.get_potential_energy() == pytest.approx(
        explicit.get_potential_energy(), abs=1e-12
    )
    # The stored split key absent from the structure: charges without ids is an error.
    renamed.calc = hybridpot.HybridCalculator(model=loaded)
    with pytest.raises(ValueError, match="fragment charges .* are given but no fragment ids"):
        renamed.get_potential_energy()


def test_model_files_without_fragment_keys_read_with_the_defaults(model, tmp_path):
    path = tmp_path / "m.pt"
    hybridpot.save_model(model, path)
    payload = torch.load(path, weights_only=True)
    assert payload["data_keys"] == {
        "total_charge": "charge",
        "fragment": "fragment",
        "fragment_charges": "fragment_charges",
        "fragment_split": None,
    }
    payload["data_keys"] = {"total_charge": "charge"}  # as written before the keys
    torch.save(payload, path)
    assert hybridpot.load_model(path).fragment_keys == {
        "fragment_key": "fragment",
        "fragment_charges_key": "fragment_charges",
        "fragment_split_key": None,
    }


@pytest.mark.parametrize(
    ("fragment_keys", "message"),
    [
        ({"fragment_key": ""}, "fragment_key must be a non-empty string"),
        ({"fragment_charges_key": []}, "fragment_charges_key must be a non-empty string or"),
        ({"fragment_charges_key": ["qa", 3]}, "fragment_charges_key must be a non-empty"),
        ({"fragment_split_key": 4}, "fragment_split_key must be None or a non-empty string"),
        ({"split_key": "indexB"}, r"unknown fragment keys \['split_key'\]"),
    ],
)
def test_bad_fragment_keys_are_named(model, tmp_path, fragment_keys, message):
    with pytest.raises(ValueError, match=message):
        hybridpot.save_model(model, tmp_path / "m.pt", fragment_keys=fragment_keys)
    if "split_key" not in fragment_keys:  # not a calculator argument
        with pytest.raises(ValueError, match=message):
            hybridpot.HybridCalculator(model=model, **fragment_keys)
