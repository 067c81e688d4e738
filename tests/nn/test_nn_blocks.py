"""Equivariance and cutoff behaviour of the building blocks (interaction, product, gate)."""

import pytest
import torch
from e3nn import o3

from hybridpot.nn import InteractionBlock, NodeProduct, RadialEmbedding, make_gate
from hybridpot.nn.irreps import exact_float64, sh_irreps
from hybridpot.testing.network import random_orthogonal, wigner_d

RC = 3.0


def edge_inputs(seed: int, n_atoms: int, n_edges: int, parity: bool, l_max: int = 2):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n_atoms, (2, n_edges), generator=g)
    vectors = torch.randn(n_edges, 3, generator=g, dtype=torch.float64)
    vectors = (
        vectors
        / vectors.norm(dim=-1, keepdim=True)
        * (0.5 + 2.0 * torch.rand(n_edges, 1, generator=g, dtype=torch.float64))
    )
    irreps_sh = sh_irreps(l_max, parity)
    return edge_index, vectors, irreps_sh


def block_outputs(block, h, attrs, edge_index, vectors, irreps_sh, radial):
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    sh = o3.spherical_harmonics(irreps_sh.ls, unit, normalize=False, normalization="component")
    return block(h, attrs, edge_index, sh, radial(vectors.norm(dim=-1)))


def make_block(irreps_in, irreps_out, irreps_sh, **kw):
    torch.manual_seed(0)
    block = InteractionBlock(
        irreps_in,
        irreps_out,
        irreps_sh,
        num_species=3,
        num_radial=5,
        radial_mlp=(8,),
        avg_num_neighbors=4.0,
        **kw,
    )
    return exact_float64(block)


@pytest.mark.parametrize("product", [True, False])
@pytest.mark.parametrize("self_connection", ["species", "linear", "none"])
def test_interaction_block_is_o3_equivariant(product, self_connection):
    irreps_in = o3.Irreps("6x0e+4x1o+3x2e+2x0o+2x1e")
    irreps_out = o3.Irreps("5x0e+3x0o+4x1o+2x1e+3x2e")
    edge_index, vectors, irreps_sh = edge_inputs(1, 7, 30, parity=True)
    block = make_block(
        irreps_in, irreps_out, irreps_sh, product=product, self_connection=self_connection
    )
    radial = RadialEmbedding(RC, 5).double()
    h = irreps_in.randn(7, -1, dtype=torch.float64)
    attrs = torch.nn.functional.one_hot(torch.randint(0, 3, (7,)), 3).double()
    out = block_outputs(block, h, attrs, edge_index, vectors, irreps_sh, radial)
    for seed, reflect in [(0, False), (1, True), (2, True)]:
        R = random_orthogonal(seed, reflect)
        d_in = wigner_d(irreps_in, R)
        d_out = wigner_d(irreps_out, R)
        rotated = block_outputs(
            block, h @ d_in.T, attrs, edge_index, vectors @ R.T, irreps_sh, radial
        )
        assert (rotated - out @ d_out.T).abs().max() < 1e-12


def test_interaction_block_parity_off_is_so3_but_not_o3():
    irreps_in = o3.Irreps("6x0e+4x1e+3x2e")
    irreps_out = irreps_in
    edge_index, vectors, irreps_sh = edge_inputs(2, 6, 30, parity=False)
    block = make_block(irreps_in, irreps_out, irreps_sh)
    radial = RadialEmbedding(RC, 5).double()
    h = irreps_in.randn(6, -1, dtype=torch.float64)
    attrs = torch.nn.functional.one_hot(torch.randint(0, 3, (6,)), 3).double()
    out = block_outputs(block, h, attrs, edge_index, vectors, irreps_sh, radial)
    R = random_orthogonal(3, reflect=False)
    rotated = block_outputs(
        block, h @ wigner_d(irreps_in, R).T, attrs, edge_index, vectors @ R.T, irreps_sh, radial
    )
    assert (rotated - out @ wigner_d(irreps_out, R).T).abs().max() < 1e-12
    # A mirror is not a symmetry: with all-even labels, D(-I) = identity, yet the output of
    # the cross-product path (1 x 1 -> 1) flips sign.
    mirrored = block_outputs(block, h, attrs, edge_index, -vectors, irreps_sh, radial)
    assert (mirrored - out).abs().max() > 1e-6


def test_edges_beyond_cutoff_contribute_exactly_nothing():
    irreps = o3.Irreps("4x0e+3x1o")
    edge_index, vectors, irreps_sh = edge_inputs(4, 5, 12, parity=True)
    block = make_block(irreps, irreps, irreps_sh)
    radial = RadialEmbedding(RC, 5).double()
    h = irreps.randn(5, -1, dtype=torch.float64)
    attrs = torch.nn.functional.one_hot(torch.arange(5) % 3, 3).double()
    out = block_outputs(block, h, attrs, edge_index, vectors, irreps_sh, radial)
    extra_index = torch.tensor([[0, 1, 2], [3, 4, 0]])
    extra_vectors = torch.tensor([[RC, 0, 0], [0, 2.5, 2.5], [5.0, 1.0, -1.0]], dtype=torch.float64)
    out2 = block_outputs(
        block,
        h,
        attrs,
        torch.cat([edge_index, extra_index], 1),
        torch.cat([vectors, extra_vectors]),
        irreps_sh,
        radial,
    )
    assert torch.equal(out, out2)


@pytest.mark.parametrize("irreps", ["4x0e+4x1o+4x2e", "3x0e+2x1e+2x2e", "5x0e+3x0o+2x1o+2x1e"])
def test_node_product_is_equivariant(irreps):
    irreps = o3.Irreps(irreps)
    torch.manual_seed(0)
    prod = exact_float64(NodeProduct(irreps, irreps))
    x = irreps.randn(9, -1, dtype=torch.float64)
    parity = any(ir.p == -1 for _, ir in irreps)
    for seed, reflect in [(5, False), (6, parity)]:
        D = wigner_d(irreps, random_orthogonal(seed, reflect))
        assert (prod(x @ D.T) - prod(x) @ D.T).abs().max() < 1e-12


def test_gate_output_irreps_and_equivariance():
    irreps = o3.Irreps("4x0e+2x0o+3x1o+2x2e")
    gate = exact_float64(make_gate(irreps))
    assert gate.irreps_out == irreps
    x = gate.irreps_in.randn(6, -1, dtype=torch.float64)
    R = random_orthogonal(7, reflect=True)
    D_in, D_out = wigner_d(gate.irreps_in, R), wigner_d(irreps, R)
    assert (gate(x @ D_in.T) - gate(x) @ D_out.T).abs().max() < 1e-12


def test_bad_self_connection():
    irreps_sh = sh_irreps(1, True)
    with pytest.raises(ValueError, match="self_connection must be one of .* got 'bogus'"):
        make_block(o3.Irreps("2x0e"), o3.Irreps("2x0e"), irreps_sh, self_connection="bogus")


def test_wigner_d_helper_agrees_with_e3nn():
    # e3nn's matrices are float32-accurate only; agreement to 1e-5 validates the helper.
    irreps = o3.Irreps("2x0e+0o+1o+1e+2e+2o+3o")
    for seed, reflect in [(8, False), (9, True)]:
        R = random_orthogonal(seed, reflect)
        assert (wigner_d(irreps, R) - irreps.D_from_matrix(R)).abs().max() < 1e-5
