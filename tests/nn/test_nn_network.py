"""The whole network: symmetry, chirality, batching, isolated atoms, smoothness, dtypes."""

import numpy as np
import pytest
import torch
from ase import Atoms

from hybridpot import keys
from hybridpot.data import batch_graphs, graph_from_atoms
from hybridpot.nn import ATOMIC_DIPOLES, EquivariantNetwork
from hybridpot.testing import tolerances
from hybridpot.testing.network import (
    CUTOFF,
    evaluate,
    graph,
    random_crystal,
    random_molecule,
    random_orthogonal,
    small_network,
    total_energy,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return small_network(predict_dipoles=True)


@pytest.fixture(scope="module")
def structures():
    return [random_molecule(0), random_crystal(1, charge=1.0), random_molecule(2, n=4)]


def test_outputs_have_documented_keys_shapes_and_dtype(net, structures):
    g = graph(structures[1])
    out = evaluate(net, g)
    assert set(out) == {keys.ENERGIES_SHORT, keys.CHARGES, ATOMIC_DIPOLES}
    n = g.num_nodes
    assert out[keys.ENERGIES_SHORT].shape == (n,) and out[keys.CHARGES].shape == (n,)
    assert out[ATOMIC_DIPOLES].shape == (n, 3)
    assert all(v.dtype == torch.float64 and torch.isfinite(v).all() for v in out.values())
    # Not trivially constant: the network sees its environment.
    assert out[keys.ENERGIES_SHORT].std() > 1e-6


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("reflect", [False, True])
def test_o3_invariance_of_energies_and_charges(net, structures, index, reflect):
    g = graph(structures[index])
    out = evaluate(net, g)
    for seed in range(2):
        R = random_orthogonal(seed + 10 * reflect, reflect)
        rot = evaluate(net, g, g.edge_vectors() @ R.T)
        for key in (keys.ENERGIES_SHORT, keys.CHARGES):
            assert (rot[key] - out[key]).abs().max() < tolerances(torch.float64).exact
        # Dipoles are vectors (1o): they rotate and flip with the structure.
        assert (rot[ATOMIC_DIPOLES] - out[ATOMIC_DIPOLES] @ R.T).abs().max() < 1e-10


def test_invariance_through_rebuilt_neighbour_list(net, structures):
    """Rotating and reflecting the atoms and cell (not just the vectors) and translating."""
    atoms = structures[1]
    R = random_orthogonal(5, reflect=True).numpy()
    moved = atoms.copy()
    moved.set_cell(atoms.cell.array @ R.T, scale_atoms=False)
    moved.positions = atoms.positions @ R.T + np.array([0.3, -7.1, 2.2])
    e0 = evaluate(net, graph(atoms))
    e1 = evaluate(net, graph(moved))
    assert (e0[keys.ENERGIES_SHORT] - e1[keys.ENERGIES_SHORT]).abs().max() < 1e-10
    assert (e0[keys.CHARGES] - e1[keys.CHARGES]).abs().max() < 1e-10


def test_permutation_equivariance(net, structures):
    atoms = structures[1]
    perm = np.random.default_rng(3).permutation(len(atoms))
    out = evaluate(net, graph(atoms))
    out_p = evaluate(net, graph(atoms[perm]))
    for key in (keys.ENERGIES_SHORT, keys.CHARGES):
        assert (out_p[key] - out[key][perm]).abs().max() < 1e-12
    # The edge order does not matter either.
    g = graph(atoms)
    edge_perm = torch.randperm(g.num_edges, generator=torch.Generator().manual_seed(0))
    shuffled = net(
        g.numbers,
        g.edge_index[:, edge_perm],
        g.edge_vectors()[edge_perm],
        g.batch,
        1,
        g.total_charge,
    )
    assert (shuffled[keys.ENERGIES_SHORT] - out[keys.ENERGIES_SHORT]).abs().max() < 1e-12


def chiral_pair():
    """A distorted tetrahedral centre with four different neighbours and its mirror image."""
    rng = np.random.default_rng(0)
    pos = np.array(
        [[0, 0, 0], [0.63, 0.63, 0.63], [-0.8, -0.75, 0.8], [-1.0, 1.1, -1.0], [1.2, -1.15, -1.1]]
    ) + rng.normal(scale=0.05, size=(5, 3))
    mol = Atoms("CHONaCl", positions=pos)  # C with four different neighbours
    mirror = mol.copy()
    mirror.positions[:, 0] *= -1
    return mol, mirror


@pytest.mark.parametrize(
    "parity, options",
    [
        (True, {}),
        (False, {}),
        (True, dict(num_layers=3)),
        (False, dict(num_layers=3, product=False)),
    ],
)
def test_chirality(parity, options):
    """parity=True: enantiomers have equal energies; parity=False: different ones.

    A chiral invariant needs a triple product (a x b) . c: two layers with the node-wise
    product (default) or three layers of plain two-body messages.
    """
    torch.manual_seed(1)
    net = small_network(parity=parity, **options)
    mol, mirror = chiral_pair()
    e, e_mirror = (total_energy(evaluate(net, graph(a))).item() for a in (mol, mirror))
    if parity:
        assert abs(e - e_mirror) < 1e-12
    else:
        # Distinct by far more than rounding (~1e-15).
        assert abs(e - e_mirror) > 1e-8
        # ... while a proper rotation still leaves the energy unchanged.
        rotated = mol.copy()
        rotated.positions = mol.positions @ random_orthogonal(4, reflect=False).numpy().T
        assert abs(total_energy(evaluate(net, graph(rotated))).item() - e) < 1e-10


def test_batched_equals_one_by_one(net, structures):
    graphs = [graph(a) for a in structures]
    batched = evaluate(net, batch_graphs(graphs))
    singles = [evaluate(net, g) for g in graphs]
    for key in (keys.ENERGIES_SHORT, keys.CHARGES, ATOMIC_DIPOLES):
        expected = torch.cat([s[key] for s in singles])
        assert (batched[key] - expected).abs().max() < 1e-12
    sums = torch.zeros(3, dtype=torch.float64).index_add(
        0, batch_graphs(graphs).batch, batched[keys.CHARGES]
    )
    assert (sums - torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)).abs().max() < 1e-12


def test_isolated_atoms_return_their_shift(net):
    shifts = {"H": -0.5, "C": -3.0, "O": -4.5, "Na": -1.3, "Cl": -2.1}
    single = Atoms("Cl")
    single.info["charge"] = -1.0
    far_apart = Atoms("NaOH", positions=[[0, 0, 0], [10, 0, 0], [0, 20, 0]])
    for atoms in (single, far_apart):
        g = graph(atoms)
        assert g.num_edges == 0
        out = evaluate(net, g)
        expected = torch.tensor(
            [shifts[s] for s in atoms.get_chemical_symbols()], dtype=torch.float64
        )
        assert (out[keys.ENERGIES_SHORT] - expected).abs().max() < 1e-12
        assert torch.isfinite(out[keys.CHARGES]).all()
    assert evaluate(net, graph(single))[keys.CHARGES].item() == pytest.approx(-1.0, abs=1e-15)


def test_energy_is_smooth_at_the_cutoff(net):
    """A dimer: E(r) - shifts and its first two derivatives vanish as r -> cutoff."""

    def dimer_energy(r):
        vec = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)]).reshape(1, 3)
        vectors = torch.cat([vec, -vec])
        out = net(
            torch.tensor([8, 1]),
            torch.tensor([[0, 1], [1, 0]]),
            vectors,
            torch.zeros(2, dtype=torch.long),
            1,
        )
        return out[keys.ENERGIES_SHORT].sum() - (-4.5 - 0.5)

    def with_derivatives(r0):
        r = torch.tensor(r0, dtype=torch.float64, requires_grad=True)
        e = dimer_energy(r)
        (d1,) = torch.autograd.grad(e, r, create_graph=True)
        (d2,) = torch.autograd.grad(d1, r)
        return abs(e.item()), abs(d1.item()), abs(d2.item())

    inside = with_derivatives(2.0)
    assert min(inside) > 1e-8  # the dimer interacts well inside the cutoff
    e, d1, d2 = with_derivatives(CUTOFF - 1e-3)
    assert e < 1e-6 * max(inside[0], 1) and d1 < 1e-4 and d2 < 1e-1
    for r in (CUTOFF, CUTOFF + 0.1):
        assert dimer_energy(torch.tensor(r, dtype=torch.float64)).abs().item() < 1e-14


def test_forces_match_finite_differences(net, structures):
    """Autograd through the edge vectors agrees with central differences of the energy."""
    atoms = structures[1]
    g = graph(atoms)
    pos = g.positions.clone().requires_grad_(True)
    energy = total_energy(evaluate(net, g, g.edge_vectors(pos)))
    (grad,) = torch.autograd.grad(energy, pos)
    h = 1e-5
    for atom, axis in [(0, 0), (3, 2), (5, 1)]:
        values = []
        for sign in (1, -1):
            p = g.positions.clone()
            p[atom, axis] += sign * h
            values.append(total_energy(evaluate(net, g, g.edge_vectors(p))).item())
        fd = (values[0] - values[1]) / (2 * h)
        assert grad[atom, axis].item() == pytest.approx(fd, abs=1e-8, rel=1e-6)


def test_coincident_atoms_give_finite_values_and_gradients(net):
    atoms = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0]])
    g = graph(atoms)
    pos = g.positions.clone().requires_grad_(True)
    out = evaluate(net, g, g.edge_vectors(pos))
    (grad,) = torch.autograd.grad(total_energy(out) + out[keys.CHARGES].pow(2).sum(), pos)
    assert all(torch.isfinite(v).all() for v in out.values()) and torch.isfinite(grad).all()


def test_float32_agrees_with_float64(net, structures):
    net32 = EquivariantNetwork(**net.config)
    net32.load_state_dict(net.state_dict())
    net32 = net32.to(torch.float32)
    g64 = batch_graphs([graph(a) for a in structures])
    out64 = evaluate(net, g64)
    out32 = evaluate(net32, g64.to(dtype=torch.float32))
    for key, value in out32.items():
        assert value.dtype == torch.float32
        scale = out64[key].abs().max().item()
        assert (value.double() - out64[key]).abs().max().item() < tolerances(
            torch.float32
        ).dtype_agreement * scale


def test_config_rebuilds_the_same_network(net, structures):
    clone = EquivariantNetwork(**net.config)
    clone.load_state_dict(net.state_dict())
    g = graph(structures[0])
    a, b = evaluate(net, g), evaluate(clone, g)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("l_max, hidden", [(0, "8x0e"), (1, [8, 4]), (3, 4), (4, "6x0e+2x4e")])
def test_every_l_max_is_invariant(l_max, hidden, structures):
    torch.manual_seed(0)
    net = small_network(l_max=l_max, hidden_irreps=hidden)
    g = graph(structures[1])
    out = evaluate(net, g)
    R = random_orthogonal(6, reflect=True)
    rot = evaluate(net, g, g.edge_vectors() @ R.T)
    assert (rot[keys.ENERGIES_SHORT] - out[keys.ENERGIES_SHORT]).abs().max() < 1e-10


@pytest.mark.parametrize(
    "options",
    [
        dict(product=False),
        dict(self_connection="linear", resnet=False),
        dict(self_connection="none", charge_projection="uniform"),
        dict(num_layers=3, trainable_radial=True, predict_charges=False),
        dict(num_layers=1, hidden_irreps="8x0e+4x0o+4x1o+4x1e"),
    ],
)
def test_options_keep_invariance_and_exact_charges(options, structures):
    torch.manual_seed(0)
    net = small_network(**options)
    g = batch_graphs([graph(a) for a in structures])
    out = evaluate(net, g)
    rot = evaluate(net, g, g.edge_vectors() @ random_orthogonal(7, reflect=True).T)
    assert (rot[keys.ENERGIES_SHORT] - out[keys.ENERGIES_SHORT]).abs().max() < 1e-10
    if options.get("predict_charges", True):
        sums = torch.zeros(3, dtype=torch.float64).index_add(0, g.batch, out[keys.CHARGES])
        assert (sums - g.total_charge).abs().max() < 1e-12
    else:
        assert keys.CHARGES not in out


def test_graph_with_larger_cutoff_is_fine(net, structures):
    """Edges beyond the network's cutoff (from a longer neighbour list) change nothing."""
    atoms = structures[1]
    out = evaluate(net, graph(atoms))
    out_long = evaluate(net, graph_from_atoms(atoms, CUTOFF + 1.5))
    assert (out[keys.ENERGIES_SHORT] - out_long[keys.ENERGIES_SHORT]).abs().max() < 1e-12


def test_weights_saved_in_float32_keep_float64_exactness(net, structures):
    """Clebsch-Gordan constants are not state: float32 weights cannot degrade them."""
    assert not [k for k in net.state_dict() if "w3j" in k]
    net32 = EquivariantNetwork(**net.config).to(torch.float32)
    net64 = EquivariantNetwork(**net.config)
    net64.load_state_dict(net32.state_dict())
    g = graph(structures[1])
    out = evaluate(net64, g)
    rot = evaluate(net64, g, g.edge_vectors() @ random_orthogonal(8, reflect=True).T)
    assert (rot[keys.ENERGIES_SHORT] - out[keys.ENERGIES_SHORT]).abs().max() < 1e-10
