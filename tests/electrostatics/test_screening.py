"""coulomb_split "cutoff": the Coulomb energy of pairs inside the network cutoff, removed
smoothly, checked against an independent pair sum over periodic images (numpy, scipy's
erf), plus finite differences, the cutoff's smoothness and the Qeq/old-file rules."""

import itertools

import numpy as np
import pytest
import torch
from scipy.special import erf

import hybridpot
from hybridpot.data import graph_from_atoms
from hybridpot.electrostatics.screening import screening_energies, screening_pair_energy
from hybridpot.keys import COULOMB_CONSTANT
from hybridpot.testing.finite_differences import numerical_forces, numerical_stress
from hybridpot.testing.structures import SMALL_CUTOFF, random_structure, small_model_config

DEGREE = 6


def reference_screening(atoms, charges, cutoff, sigma_q, degree=DEGREE) -> float:
    """-(k_e/2) sum over (i, j, image) with 0 < r < r_c of q_i q_j phi(r) u(r / r_c):
    every image pair enumerated by brute force, independently of any neighbour list."""
    positions = atoms.positions
    cell = atoms.cell.array
    pbc = atoms.pbc
    # generous: positions are unwrapped by up to one lattice vector, cells are skewed
    reach = [int(np.ceil(cutoff / np.linalg.norm(cell[k]))) + 3 if pbc[k] else 0 for k in range(3)]
    p = degree
    total = 0.0
    for n in itertools.product(*(range(-m, m + 1) for m in reach)):
        shift = np.asarray(n) @ cell
        for i, j in itertools.product(range(len(atoms)), repeat=2):
            r = np.linalg.norm(positions[j] + shift - positions[i])
            if r == 0.0 or r >= cutoff:
                continue
            d = r / cutoff
            u = 1 - (p + 1) * (p + 2) / 2 * d**p + p * (p + 2) * d ** (p + 1)
            u -= p * (p + 1) / 2 * d ** (p + 2)
            phi = erf(r / (2 * sigma_q)) / r if sigma_q > 0 else 1.0 / r
            total += charges[i] * charges[j] * phi * u
    return -0.5 * COULOMB_CONSTANT * total


@pytest.mark.parametrize("sigma_q", [0.0, 0.5, 1.5])
@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (False,) * 3])
def test_screened_model_removes_exactly_the_pairs_inside_the_cutoff(sigma_q, pbc):
    # Same weights, split "cutoff" vs "none": the difference is the pair sum, to round-off.
    atoms = random_structure(seed=3, n=8, pbc=pbc, scale=4.5)
    energies = {}
    for split in ("none", "cutoff"):
        torch.manual_seed(0)
        model = hybridpot.build_model(
            small_model_config(sigma_q=sigma_q, coulomb_split=split, charge_init_scale=1.0)
        )
        graph = graph_from_atoms(atoms, model.cutoff, dtype=torch.float64)
        out = model(graph, compute_forces=False, compute_stress=False)
        energies[split] = float(out["energy"][0].detach())
        charges = out["charges"].detach().numpy()
    expected = reference_screening(atoms, charges, SMALL_CUTOFF, sigma_q)
    assert abs(expected) > 1e-4  # the cell has charged pairs inside the cutoff
    assert energies["cutoff"] - energies["none"] == pytest.approx(expected, abs=1e-10)


def test_pairs_beyond_the_cutoff_keep_the_full_coulomb_law():
    r = torch.linspace(SMALL_CUTOFF, 3 * SMALL_CUTOFF, 50, dtype=torch.float64)
    assert torch.all(screening_pair_energy(r, SMALL_CUTOFF, 0.5, DEGREE) == 0)
    # and an edge list holding longer edges (a graph built with a larger cutoff) adds 0
    charges = torch.tensor([1.0, -1.0], dtype=torch.float64)
    edges = torch.tensor([[0, 1], [1, 0]])
    vectors = torch.tensor([[SMALL_CUTOFF + 0.1, 0, 0], [-SMALL_CUTOFF - 0.1, 0, 0]])
    out = screening_energies(charges, edges, vectors.double(), SMALL_CUTOFF, 0.5, DEGREE)
    assert torch.all(out == 0)


def test_screened_kernel_is_smooth_at_the_cutoff_and_vanishes_at_short_range():
    # phi (1 - u) has value, slope and curvature of phi at r_c (u, u', u'' vanish there),
    # and falls off like r^(p-1) at r -> 0 for point charges.
    rc = SMALL_CUTOFF
    r = torch.tensor([rc - 1e-6, rc - 1e-7], dtype=torch.float64, requires_grad=True)
    screened = 1.0 / r - screening_pair_energy(r, rc, 0.0, DEGREE)
    (slope,) = torch.autograd.grad(screened.sum(), r, create_graph=True)
    np.testing.assert_allclose(slope.detach(), -1.0 / r.detach() ** 2, rtol=1e-8)
    (curvature,) = torch.autograd.grad(slope.sum(), r)
    np.testing.assert_allclose(curvature, 2.0 / r.detach() ** 3, rtol=1e-4)
    short = torch.tensor([1e-2], dtype=torch.float64)
    remaining = 1.0 / short - screening_pair_energy(short, rc, 0.0, DEGREE)
    assert float(remaining) < 1e-8  # the network owns the short range


def test_gaussian_kernel_is_finite_and_differentiable_at_short_range():
    r = torch.tensor([1e-6, 1e-4, 1e-2, 0.4], dtype=torch.float64, requires_grad=True)
    value = screening_pair_energy(r, SMALL_CUTOFF, 0.5, DEGREE)
    np.testing.assert_allclose(
        value.detach()[:3], 1.0 / (0.5 * np.sqrt(np.pi)), rtol=1e-3
    )  # erf(r/2s)/r -> 1/(s sqrt(pi))
    (grad,) = torch.autograd.grad(value.sum(), r)
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("pbc", [(True, True, True), (False,) * 3])
def test_screened_model_forces_and_stress_match_finite_differences(pbc):
    torch.manual_seed(1)
    model = hybridpot.build_model(small_model_config(coulomb_split="cutoff", charge_init_scale=1.0))
    atoms = random_structure(seed=5, n=6, pbc=pbc, scale=4.5)

    def energy(a):
        graph = graph_from_atoms(a, model.cutoff, dtype=torch.float64)
        return float(model(graph, compute_forces=False, compute_stress=False)["energy"][0])

    graph = graph_from_atoms(atoms, model.cutoff, dtype=torch.float64)
    out = model(graph)
    np.testing.assert_allclose(
        out["forces"].detach().numpy(), numerical_forces(energy, atoms), atol=1e-7
    )
    if all(pbc):
        np.testing.assert_allclose(
            out["stress_voigt"][0].detach().numpy(), numerical_stress(energy, atoms), atol=1e-7
        )


def test_default_split_is_cutoff_for_latent_and_none_for_qeq():
    latent = hybridpot.build_model(small_model_config())
    assert latent.config["coulomb_split"] == "cutoff"  # resolved and saved explicitly
    qeq = hybridpot.build_model(small_model_config(charge_model="qeq"))
    assert qeq.config["coulomb_split"] == "none"
    with pytest.raises(ValueError, match="coulomb_split 'cutoff' is for latent charges"):
        hybridpot.build_model(small_model_config(charge_model="qeq", coulomb_split="cutoff"))
    with pytest.raises(ValueError, match="coulomb_split"):
        hybridpot.build_model(small_model_config(coulomb_split="screened"))


def test_charge_init_scale_scales_the_untrained_charges():
    atoms = random_structure(seed=2, n=8)
    charges = {}
    for scale in (1.0, 0.1):
        torch.manual_seed(0)
        model = hybridpot.build_model(small_model_config(charge_init_scale=scale))
        graph = graph_from_atoms(atoms, model.cutoff, dtype=torch.float64)
        charges[scale] = model(graph, compute_forces=False, compute_stress=False)["charges"]
    # Neutral cell: the projection is linear in the raw charges (the weights are unchanged)
    torch.testing.assert_close(charges[0.1], 0.1 * charges[1.0])
    with pytest.raises(ValueError, match="charge_init_scale"):
        hybridpot.build_model(small_model_config(charge_init_scale=0.0))


def test_auto_charge_init_scale_shrinks_only_charges_with_a_coulomb_term():
    atoms = random_structure(seed=2, n=8)
    charges = {}
    for coulomb, scale in ((True, "auto"), (False, "auto"), (True, 1.0), (True, "0.1")):
        torch.manual_seed(0)
        config = small_model_config(coulomb=coulomb, charge_init_scale=scale)
        model = hybridpot.build_model(config)
        graph = graph_from_atoms(atoms, model.cutoff, dtype=torch.float64)
        out = model(graph, compute_forces=False, compute_stress=False)["charges"]
        charges[(coulomb, scale)] = out
        # Saved configs say which number was used.
        expected = (0.1 if coulomb else 1.0) if scale == "auto" else float(scale)
        assert model.config["charge_init_scale"] == expected
    torch.testing.assert_close(charges[(True, "auto")], 0.1 * charges[(True, 1.0)])
    torch.testing.assert_close(charges[(True, "0.1")], charges[(True, "auto")])
    # Without a Coulomb term the charges start at the plain initialisation.
    torch.testing.assert_close(charges[(False, "auto")], charges[(True, 1.0)])
    with pytest.raises(ValueError, match="charge_init_scale must be 'auto' or a number"):
        hybridpot.build_model(small_model_config(charge_init_scale="small"))
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="charge_init_scale must be finite and > 0"):
            hybridpot.build_model(small_model_config(charge_init_scale=bad))
    with pytest.raises(TypeError, match="charge_init_scale must be a number"):
        hybridpot.build_model(small_model_config(charge_init_scale=True))
