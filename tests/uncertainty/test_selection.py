"""Selection: never a moved or relabelled copy of a labelled structure, diverse, repeatable."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from hybridpot.data.dataset import graphs_from_structures
from hybridpot.testing.structures import random_structure
from hybridpot.uncertainty import greedy_selection, random_selection, select_structures


def moved_copies(atoms, seed):
    """A rotated, a reflected, a translated and a permuted copy of ``atoms``."""
    rng = np.random.default_rng(seed)
    out = []
    for reflect in (False, True):
        matrix = Rotation.random(random_state=seed).as_matrix()
        if reflect:
            matrix = matrix @ np.diag([-1.0, 1.0, 1.0])
        copy = atoms.copy()
        copy.positions = atoms.positions @ matrix.T
        copy.cell = atoms.cell.array @ matrix.T
        out.append(copy)
    translated = atoms.copy()
    translated.positions += rng.normal(size=3) * 3
    out.append(translated)
    out.append(atoms[rng.permutation(len(atoms))])
    return out


def test_copies_of_labelled_structures_are_never_picked(fitted, data):
    train, _ = data
    new = [random_structure(s, n=8, scale=6.0) for s in (200, 201, 202)]
    copies = [c for k, atoms in enumerate(train[:3]) for c in moved_copies(atoms, k)]
    pool = copies + new
    cutoff = fitted.cutoff
    chosen = select_structures(
        fitted,
        graphs_from_structures(pool, cutoff),
        len(pool),  # ask for everything: only the new ones may come back
        exclude=graphs_from_structures(train, cutoff),
    )
    assert sorted(chosen.indices) == [len(copies) + k for k in range(3)]
    assert chosen.duplicates == list(range(len(copies)))
    # A copy has its original's uncertainty (invariance).
    original = select_structures(fitted, graphs_from_structures(train[:1], cutoff), 1)
    np.testing.assert_allclose(chosen.uncertainty[:4], original.uncertainty[0], rtol=1e-9)


def test_no_two_copies_of_one_new_configuration(fitted):
    base = random_structure(300, n=8, scale=6.0)
    others = [random_structure(s, n=8, scale=6.0) for s in (301, 302)]
    pool = moved_copies(base, 5) + others
    chosen = select_structures(fitted, graphs_from_structures(pool, fitted.cutoff), 3)
    assert sum(i < 4 for i in chosen.indices) <= 1
    assert len(chosen.indices) == 3


def test_selection_is_deterministic(fitted, data):
    _, valid = data
    graphs = graphs_from_structures(valid, fitted.cutoff)
    first = select_structures(fitted, graphs, 4)
    second = select_structures(fitted, graphs, 4)
    assert first.indices == second.indices
    # The first pick (nothing labelled yet) is the most uncertain structure.
    assert first.indices[0] == int(np.argmax(first.uncertainty))
    assert random_selection(50, 5, seed=3) == random_selection(50, 5, seed=3)
    assert random_selection(50, 5, seed=3) != random_selection(50, 5, seed=4)
    assert len(set(random_selection(50, 50, seed=0))) == 50


def test_greedy_selection_weighs_uncertainty_and_distance():
    descriptors = np.array([[0.0, 0.0], [0.01, 0.0], [5.0, 0.0], [0.0, 1.0]])
    uncertainty = np.array([1.0, 0.99, 0.5, 0.2])
    chosen = greedy_selection(uncertainty, descriptors, 2)
    # 0 first (most uncertain); then 1 is close to 0 (score 0.99 * 0.01), 2 is far.
    assert chosen.indices == [0, 2]


def test_bad_arguments_are_named(fitted, data):
    with pytest.raises(ValueError, match="k .* must be an integer >= 1"):
        greedy_selection(np.ones(2), np.zeros((2, 3)), 0)
    with pytest.raises(ValueError, match="descriptors must have shape"):
        greedy_selection(np.ones(2), np.zeros((3, 3)), 1)
    with pytest.raises(ValueError, match="criterion must be one of"):
        select_structures(
            fitted, graphs_from_structures(data[1], fitted.cutoff), 1, criterion="stress"
        )
    with pytest.raises(ValueError, match="pool is empty"):
        select_structures(fitted, [], 1)
