"""Test helpers for the equivariant network, shipped with the package (used by ``tests/nn``).

Random mixed-species molecules and triclinic crystals, a small fast float64 network, exact
(float64) Wigner matrices for equivariance checks, random rotations/reflections as torch
tensors, and a one-line evaluation of the network on an :class:`AtomicGraph`.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from e3nn import o3

from .. import keys
from ..data import AtomicGraph, graph_from_atoms
from ..nn.network import EquivariantNetwork
from .finite_differences import random_orthogonal as _random_orthogonal

ELEMENTS = ["H", "C", "O", "Na", "Cl"]
CUTOFF = 3.5


def small_network(**overrides) -> EquivariantNetwork:
    """A small float64 network (fast to evaluate) over ``ELEMENTS``."""
    config = dict(
        elements=ELEMENTS,
        cutoff=CUTOFF,
        num_layers=2,
        hidden_irreps="12x0e+6x1o+4x2e",
        l_max=2,
        num_radial=6,
        radial_mlp=(16,),
        readout_mlp=(8,),
        avg_num_neighbors=6.0,
        atomic_energies={"H": -0.5, "C": -3.0, "O": -4.5, "Na": -1.3, "Cl": -2.1},
        energy_scale=1.7,
    )
    config.update(overrides)
    return EquivariantNetwork(**config)  # float64 with exact constants


def _place(rng, n, sampler, min_distance):
    positions = []
    while len(positions) < n:
        trial = sampler()
        if all(np.linalg.norm(trial - p) > min_distance for p in positions):
            positions.append(trial)
    return np.array(positions)


def random_molecule(seed: int, n: int = 7, box: float = 4.0) -> Atoms:
    """A random, asymmetric cluster of ``n`` atoms of mixed species (no pbc)."""
    rng = np.random.default_rng(seed)
    positions = _place(rng, n, lambda: rng.uniform(0, box, 3), 0.9)
    symbols = [ELEMENTS[k] for k in rng.integers(0, len(ELEMENTS), n)]
    return Atoms(symbols, positions=positions)


def random_crystal(seed: int, n: int = 6, scale: float = 4.2, charge: float = 0.0) -> Atoms:
    """A random triclinic periodic cell with unwrapped positions and mixed species."""
    rng = np.random.default_rng(seed)
    cell = np.eye(3) * scale + rng.uniform(-0.2, 0.2, (3, 3)) * scale
    frac = _place(rng, n, lambda: rng.uniform(0, 1, 3), 0.2)
    positions = frac @ cell + rng.integers(-1, 2, (n, 3)) @ cell  # unwrapped
    symbols = [ELEMENTS[k] for k in rng.integers(0, len(ELEMENTS), n)]
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    atoms.info["charge"] = charge
    return atoms


def random_orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    """A random 3x3 orthogonal matrix (float64 tensor) with det = -1 if ``reflect`` else +1."""
    return torch.tensor(_random_orthogonal(np.random.default_rng(seed), reflect))


def wigner_d(irreps: o3.Irreps, R: torch.Tensor) -> torch.Tensor:
    """Block-diagonal representation matrix of the orthogonal matrix R on ``irreps``, float64.

    e3nn's ``Irreps.D_from_matrix`` builds its generators in the default dtype (float32), so
    its matrices are only good to ~1e-7. Here D^l is fitted exactly from the (float64,
    polynomial) spherical harmonics: Y_l(R x) = D^l(R) Y_l(x) for many points x. For an
    improper R = -R', Y_l(R x) = (-1)^l Y_l(R' x), so the fit gives (-1)^l D^l(R'); an irrep
    of parity p gets p^[det R < 0] D^l(R').
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    det = torch.linalg.det(R).item()
    blocks = []
    for mul, ir in o3.Irreps(irreps):
        y = o3.spherical_harmonics(ir.l, x, normalize=True, normalization="component")
        y_rot = o3.spherical_harmonics(ir.l, x @ R.T, normalize=True, normalization="component")
        d = torch.linalg.lstsq(y, y_rot).solution.T  # y_rot = y @ d.T
        if det < 0:
            d = d * (ir.p * (-1) ** ir.l)
        blocks += [d] * mul
    return torch.block_diag(*blocks) if blocks else torch.zeros(0, 0, dtype=torch.float64)


def evaluate(
    net: EquivariantNetwork, graph: AtomicGraph, vectors: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Run the network on a graph (optionally with replaced edge vectors)."""
    if vectors is None:
        vectors = graph.edge_vectors()
    return net(
        graph.numbers,
        graph.edge_index,
        vectors,
        graph.batch,
        graph.num_graphs,
        graph.total_charge,
    )


def total_energy(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of the per-atom short-range energies (eV)."""
    return out[keys.ENERGIES_SHORT].sum()


def graph(atoms: Atoms, dtype=torch.float64) -> AtomicGraph:
    """The graph of ``atoms`` with the helpers' cutoff."""
    return graph_from_atoms(atoms, CUTOFF, dtype=dtype)
