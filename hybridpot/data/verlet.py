"""Graphs for a sequence of nearby geometries (MD, relaxation) with Verlet skin lists.

Building a neighbour list and a Coulomb plan costs host work at every step. With a skin
the lists are built for ``cutoff + skin`` and reused while no atom has moved more than
half the skin since they were built (then no pair can have crossed into the cutoff
unseen); each step keeps only the pairs inside the cutoff, so the model sees exactly
the pairs a fresh list would give (tested to round-off against fresh lists).

A change of the cell, the periodicity, the species or the number of atoms rebuilds.
"""

from __future__ import annotations

import dataclasses

import ase
import numpy as np
import torch

from .. import keys
from ..hyperparameters import check_skin
from .graph import AtomicGraph, graph_from_atoms


class VerletGraphs:
    """Graphs of ``atoms`` along a trajectory, reusing skin lists.

    Args:
        cutoff: the network's cutoff (Å).
        skin: Å added to every list (network edges and Coulomb real-space pairs);
            0 rebuilds at every call.
        dtype: float dtype of the graphs.
        device: where graphs and lists live.

    Attributes:
        builds: how many times the lists were built (for tests and diagnostics).
    """

    def __init__(self, cutoff: float, skin: float = 1.0, *, dtype=torch.float64, device="cpu"):
        self.cutoff = float(cutoff)
        self.skin = check_skin(skin)
        self.dtype = dtype
        self.device = torch.device(device)
        self.builds = 0
        self._key = None
        self._reference: np.ndarray | None = None
        self._graph: AtomicGraph | None = None
        self._plans: dict = {}

    def _needs_rebuild(self, atoms: ase.Atoms) -> bool:
        key = (
            len(atoms),
            atoms.numbers.tobytes(),
            np.asarray(atoms.pbc).tobytes(),
            np.asarray(atoms.cell).tobytes(),
        )
        if self._graph is None or key != self._key or self.skin == 0:
            self._key = key
            return True
        moved = np.linalg.norm(atoms.positions - self._reference, axis=1).max(initial=0.0)
        return not moved < 0.5 * self.skin

    def __call__(self, atoms: ase.Atoms, electrostatics=None) -> AtomicGraph:
        """The graph of ``atoms`` (with the Coulomb plan of ``electrostatics`` attached
        when given), its edges exactly those within ``cutoff``.

        The total charge is ``atoms.info["charge"]`` (default 0), as in
        :func:`graph_from_atoms`; callers with another key replace it.
        """
        if self._needs_rebuild(atoms):
            self._graph = graph_from_atoms(
                atoms, self.cutoff + self.skin, dtype=self.dtype, device=self.device
            )
            self._reference = atoms.positions.copy()
            self._plans = {}
            self.builds += 1
        positions = torch.tensor(atoms.positions, dtype=self.dtype, device=self.device)
        total = float(atoms.info.get(keys.TOTAL_CHARGE_INFO, 0.0))
        listed = dataclasses.replace(
            self._graph,
            positions=positions,
            total_charge=torch.full_like(self._graph.total_charge, total),
            _cache={},
        )
        vectors = listed.edge_vectors().detach()
        keep = torch.linalg.norm(vectors, dim=1) < self.cutoff
        graph = dataclasses.replace(
            listed,
            edge_index=listed.edge_index[:, keep],
            cell_shifts=listed.cell_shifts[keep],
            cutoff=self.cutoff,
            _cache={},
        )
        if electrostatics is not None:
            settings = electrostatics.settings
            if settings not in self._plans:
                self._plans[settings] = electrostatics.plan(
                    positions, listed.cell, listed.pbc, listed.batch, skin=self.skin
                )
            plan = self._plans[settings].restricted(positions, listed.cell)
            graph._cache[("coulomb", settings)] = plan
        return graph
