"""Species embedding, option validation and input checks: every bad value gets a clear error."""

import pytest
import torch
from e3nn import o3

from hybridpot.nn import EquivariantNetwork, SpeciesEmbedding
from hybridpot.nn.irreps import hidden_irreps_from
from hybridpot.testing.network import ELEMENTS, graph, random_molecule, small_network


def test_species_index_follows_element_order():
    emb = SpeciesEmbedding(["O", "H", "Na"], 4)
    idx = emb.species_index(torch.tensor([1, 8, 11, 1]))
    assert idx.tolist() == [1, 0, 2, 1]
    assert emb(idx).shape == (4, 4)


def test_unknown_element_error_names_it():
    emb = SpeciesEmbedding(["O", "H"], 4)
    with pytest.raises(ValueError, match=r"elements \['Na', 'Fe'\] \(Z=\[11, 26\]\).*\['O', 'H'\]"):
        emb.species_index(torch.tensor([1, 26, 11, 8]))
    with pytest.raises(ValueError, match=r"atomic numbers in 1..118, got \[0, 200\]"):
        emb.species_index(torch.tensor([0, 1, 200]))
    with pytest.raises(TypeError, match="numbers must be an int64 tensor"):
        emb.species_index(torch.tensor([1.0, 8.0]))


def test_network_rejects_unknown_element_in_structure():
    net = small_network(elements=["H", "O"], atomic_energies=None)
    g = graph(random_molecule(0))  # contains C, Na or Cl
    with pytest.raises(ValueError, match="that the model does not know"):
        net(g.numbers, g.edge_index, g.edge_vectors(), g.batch, 1)


@pytest.mark.parametrize(
    "elements, error, match",
    [
        ("NaCl", TypeError, "elements must be a list of chemical symbols"),
        ([], ValueError, "at least one chemical symbol"),
        (["Na", "Xx"], ValueError, "'Xx' is not a chemical symbol"),
        (["Na", 11], ValueError, "11 is not a chemical symbol"),
        (["Na", "Cl", "Na"], ValueError, r"must not repeat a symbol, got \['Na'\]"),
    ],
)
def test_bad_elements(elements, error, match):
    with pytest.raises(error, match=match):
        EquivariantNetwork(elements, 4.0)


BAD_OPTIONS = [
    (dict(cutoff=-1.0), ValueError, "cutoff must be a finite positive number of Å, got -1.0"),
    (dict(cutoff=None), TypeError, "cutoff must be a number"),
    (dict(num_layers=0), ValueError, "num_layers must be an integer >= 1, got 0"),
    (dict(num_layers=2.0), TypeError, "num_layers must be an integer"),
    (dict(l_max=5), ValueError, r"l_max must be an integer in 0..4, got 5"),
    (dict(l_max=-1), ValueError, r"l_max must be an integer in 0..4"),
    (dict(hidden_irreps="8x1o"), ValueError, "must contain even scalars"),
    (dict(hidden_irreps="8x0e+4x3o", l_max=2), ValueError, "l = 3 > l_max = 2"),
    (dict(hidden_irreps="8 scalars"), ValueError, "hidden_irreps must be an irreps string"),
    (dict(hidden_irreps=[8, -1]), ValueError, "channels per l must be a non-empty list"),
    (dict(hidden_irreps=0), ValueError, "hidden_irreps as an int must be >= 1"),
    (dict(hidden_irreps=1.5), TypeError, "hidden_irreps must be an irreps string"),
    (dict(parity="yes"), TypeError, "parity must be True or False"),
    (dict(num_radial=0), ValueError, "num_radial must be an integer >= 1, got 0"),
    (dict(radial_mlp=(16, 0)), ValueError, r"radial_mlp must be a list of hidden widths"),
    (dict(readout_mlp="wide"), ValueError, r"readout_mlp must be a list of hidden widths"),
    (dict(polynomial_degree=1), ValueError, "polynomial_degree must be an integer >= 2, got 1"),
    (dict(avg_num_neighbors=0.0), ValueError, "avg_num_neighbors must be a finite positive"),
    (dict(avg_num_neighbors="many"), TypeError, "avg_num_neighbors must be a number"),
    (dict(atomic_energies={"Fe": 1.0}), ValueError, r"atomic_energies has elements \['Fe'\]"),
    (dict(energy_scale=-2.0), ValueError, "energy_scale must be a finite positive number"),
    (dict(predict_charges=1), TypeError, "predict_charges must be True or False"),
    (dict(charge_projection="none"), ValueError, "charge_projection must be one of"),
    (dict(product=None), TypeError, "product must be True or False"),
    (dict(self_connection="full"), ValueError, "self_connection must be one of"),
    (dict(resnet="no"), TypeError, "resnet must be True or False"),
    (dict(trainable_radial=0), TypeError, "trainable_radial must be True or False"),
    (dict(predict_dipoles=True, hidden_irreps="8x0e+4x2e"), ValueError, "needs vector"),
]


@pytest.mark.parametrize("options, error, match", BAD_OPTIONS)
def test_bad_options(options, error, match):
    kwargs = dict(elements=ELEMENTS, cutoff=3.0)
    kwargs.update(options)
    with pytest.raises(error, match=match):
        EquivariantNetwork(**kwargs)


def test_hidden_irreps_forms_and_parity_relabelling():
    assert hidden_irreps_from([8, 4, 2], 2, True) == o3.Irreps("8x0e+4x1o+2x2e")
    assert hidden_irreps_from(3, 1, True) == o3.Irreps("3x0e+3x1o")
    assert hidden_irreps_from("4x1o+8x0e", 1, True) == o3.Irreps("8x0e+4x1o")
    # Parity off: every irrep is even, and 1o + 1e merge into one 1e block.
    assert hidden_irreps_from("8x0e+4x1o+2x1e", 1, False) == o3.Irreps("8x0e+6x1e")


@pytest.fixture(scope="module")
def net_and_graph():
    return small_network(), graph(random_molecule(1))


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(numbers=torch.ones(2, 2, dtype=torch.long)), ValueError, r"numbers must have shape"),
        (dict(edge_index=torch.zeros(3, 4, dtype=torch.long)), ValueError, "edge_index must have"),
        (dict(vectors=torch.zeros(1, 3, dtype=torch.float64)), ValueError, "edge_vectors must"),
        (dict(vectors="float32"), TypeError, "must have the network's dtype torch.float64"),
        (dict(batch=torch.zeros(1, dtype=torch.long)), ValueError, "batch must have shape"),
        (dict(num_graphs=0), ValueError, "num_graphs must be an integer >= 1, got 0"),
        (dict(total_charge=torch.zeros(2).double()), ValueError, r"total_charge must have shape"),
    ],
)
def test_bad_inputs(net_and_graph, change, error, match):
    net, g = net_and_graph
    args = dict(
        numbers=g.numbers,
        edge_index=g.edge_index,
        vectors=g.edge_vectors(),
        batch=g.batch,
        num_graphs=1,
        total_charge=g.total_charge,
    )
    args.update(change)
    if isinstance(args["vectors"], str):
        args["vectors"] = g.edge_vectors().float()
    with pytest.raises(error, match=match):
        net(*args.values())
