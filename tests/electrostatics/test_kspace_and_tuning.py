"""Building blocks: the fast mesh interpolator, the lattice P3M filter, parameter choice."""

import math

import numpy as np
import pytest
import torch

from hybridpot.electrostatics import CoulombParameters, choose_parameters
from hybridpot.electrostatics.kspace import half_sphere_miller_indices
from hybridpot.electrostatics.slab import shortest_plane_vector
from hybridpot.electrostatics.tuning import (
    FORCE_FRACTION,
    MAX_MESH_POINTS,
    REAL_SPACE_MARGIN,
    SAFETY,
    error_target,
    fft_size,
    mesh_error,
    real_space_error,
    validate_overrides,
)


def _triclinic(rng):
    cell = torch.tensor(np.eye(3) * 7.0 + rng.uniform(-2, 2, (3, 3)), dtype=torch.float64)
    positions = torch.tensor(rng.uniform(-10, 20, (13, 3)), dtype=torch.float64)
    return cell, positions


def test_half_sphere_k_vectors():
    cell = torch.tensor([[5.0, 0.0, 0.0], [2.0, 6.0, 0.0], [1.0, 1.0, 7.0]], dtype=torch.float64)
    k_cutoff = 3.0
    m = half_sphere_miller_indices(cell, k_cutoff)
    k = 2 * math.pi * m.double() @ torch.linalg.inv(cell).T
    assert (k.norm(dim=1) <= k_cutoff).all()
    # Brute force: all nonzero m within the sphere, one of each +-m pair.
    grid = torch.stack(torch.meshgrid(*[torch.arange(-12, 13)] * 3, indexing="ij"), -1)
    grid = grid.reshape(-1, 3)
    kk = 2 * math.pi * grid.double() @ torch.linalg.inv(cell).T
    inside = (kk.norm(dim=1) <= k_cutoff) & (grid.abs().sum(1) > 0)
    assert 2 * m.shape[0] == int(inside.sum())
    as_set = {tuple(x) for x in m.tolist()}
    assert not any(tuple(-x for x in v) in as_set for v in as_set)


def test_fft_sizes():
    assert [fft_size(n) for n in (1, 7, 11, 13, 49, 97, 121)] == [1, 8, 12, 15, 50, 100, 125]


@pytest.mark.parametrize("seed", range(5))
def test_shortest_plane_vector(seed):
    rng = np.random.default_rng(seed)
    a1 = rng.normal(size=3) * 4
    a2 = 7 * a1 + rng.normal(size=3)  # a very skewed basis of a 2D lattice
    m = np.stack(np.meshgrid(np.arange(-30, 31), np.arange(-30, 31)), -1).reshape(-1, 2)
    m = m[np.abs(m).sum(1) > 0]
    brute = np.linalg.norm(m[:, :1] * a1 + m[:, 1:] * a2, axis=1).min()
    assert shortest_plane_vector(a1, a2) == pytest.approx(brute, rel=1e-12)


@pytest.mark.parametrize("method", ["pme", "p3m", "ewald"])
@pytest.mark.parametrize("accuracy", [1e-2, 1e-4, 1e-6])
def test_chosen_parameters_meet_the_error_model(method, accuracy):
    volume, n = 5000.0, 200
    d = (volume / n) ** (1 / 3)
    params = choose_parameters(volume, n, method=method, accuracy=accuracy)
    assert isinstance(params, CoulombParameters)
    budget = error_target(accuracy)
    assert budget == pytest.approx(accuracy * FORCE_FRACTION / SAFETY)
    real = real_space_error(d, params.real_space_cutoff, params.smearing)
    assert real <= budget / REAL_SPACE_MARGIN * 1.0001
    if method != "ewald":
        error = mesh_error(
            method, params.interpolation_nodes, d, params.smearing, params.mesh_spacing
        )
        assert error <= budget * 1.0001
        shape = params.mesh_shape(np.eye(3) * volume ** (1 / 3))
        assert all(fft_size(s) == s and s >= params.interpolation_nodes for s in shape)


def test_tighter_accuracy_costs_more():
    volume, n = 20000.0, 800
    loose = choose_parameters(volume, n, method="pme", accuracy=1e-3)
    tight = choose_parameters(volume, n, method="pme", accuracy=1e-6)
    assert tight.real_space_cutoff > loose.real_space_cutoff
    assert tight.mesh_spacing < loose.mesh_spacing


def test_overrides_are_kept_and_the_rest_adapts():
    params = choose_parameters(
        3000.0, 100, method="pme", accuracy=1e-5, overrides={"smearing": 1.1}
    )
    assert params.smearing == 1.1
    d = (3000.0 / 100) ** (1 / 3)
    error = real_space_error(d, params.real_space_cutoff, 1.1)
    assert error <= error_target(1e-5) / REAL_SPACE_MARGIN * 1.0001
    params = choose_parameters(
        3000.0, 100, method="pme", accuracy=1e-5, overrides={"real_space_cutoff": 9.0}
    )
    assert params.real_space_cutoff == 9.0
    with pytest.raises(ValueError, match=r"real_space_cutoff 2 Å is too short"):
        choose_parameters(
            3000.0,
            100,
            method="pme",
            accuracy=1e-5,
            sigma_q=1.0,
            overrides={"real_space_cutoff": 2.0},
        )


def test_wide_gaussians_set_the_smearing_and_tighten_the_target():
    params = choose_parameters(3000.0, 100, method="pme", accuracy=1e-4, sigma_q=3.0)
    assert params.smearing > math.sqrt(2) * 3.0
    d = 30.0 ** (1 / 3)
    assert error_target(1e-4, d, 1.0) < 0.9 * error_target(1e-4, d, 0.0)
    assert error_target(1e-4, d, 2.0) < 0.4 * error_target(1e-4, d, 0.0)
    assert error_target(1e-4, d, 0.0) == error_target(1e-4)


def test_validate_overrides():
    assert validate_overrides({"smearing": 1, "mesh_spacing": None}, "pme") == {"smearing": 1.0}
    with pytest.raises(TypeError, match=r"smearing must be a number"):
        validate_overrides({"smearing": "1"}, "pme")
    with pytest.raises(TypeError, match=r"interpolation_nodes must be an integer"):
        validate_overrides({"interpolation_nodes": 4.5}, "pme")
    with pytest.raises(ValueError, match=r"interpolation_nodes for method 'pme' must be in 3..7"):
        validate_overrides({"interpolation_nodes": 2}, "pme")


def test_mesh_limit():
    params = CoulombParameters("pme", 1.0, 5.0, mesh_spacing=1e-3, interpolation_nodes=7)
    with pytest.raises(ValueError, match=r"limit"):
        params.mesh_shape(np.eye(3) * (MAX_MESH_POINTS ** (1 / 3) * 2e-3))
