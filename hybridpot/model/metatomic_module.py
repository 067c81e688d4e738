"""The metatomic module of an exported model (see :mod:`hybridpot.model.export`).

No ``from __future__ import annotations`` here: metatomic reads the forward's annotations
(``List[System]``, ``Dict[str, ModelOutput]``) as real types before TorchScript compiles
the module. Importing this module needs metatomic-torch (the ``deploy`` extra).
"""

# TorchScript (and metatomic's annotation check) compile typing.List/Dict/Tuple/Optional.
# ruff: noqa: UP006, UP035, UP045

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from .. import keys
from ..electrostatics.screening import screening_energies
from ..electrostatics.scriptable import ScriptableCoulomb
from ..electrostatics.scriptable_induction import ScriptableInduction
from ..nn.scriptable import ScriptableNetwork
from .hybrid import HybridModel


class ExportedHybridModel(torch.nn.Module):
    """metatomic ModelInterface of a :class:`HybridModel` (energy and charges; the
    Coulomb energy, its screening and the induction energy as the model has them)."""

    def __init__(self, model: HybridModel):
        super().__init__()
        self.network = ScriptableNetwork(model.network)
        electrostatics = model.electrostatics
        self.coulomb = (
            ScriptableCoulomb(
                electrostatics.sigma_q,
                electrostatics.method,
                electrostatics.accuracy,
                electrostatics.overrides,
            )
            if electrostatics is not None
            else None
        )
        self.cutoff = float(model.cutoff)
        # induction: polarisable atoms in the charges' field (the trained alpha, Å³)
        self.induction = (
            ScriptableInduction(
                electrostatics.sigma_q,
                electrostatics.method,
                electrostatics.accuracy,
                electrostatics.overrides,
                model.polarizabilities().detach(),
                model.cutoff,
                model.model_config.polynomial_degree,
            )
            if model.polarizability_raw is not None
            else None
        )
        # coulomb_split "cutoff": pairs inside the cutoff leave the Coulomb energy.
        self.screened = bool(model.model_config.screened)
        self.sigma_q = float(model.model_config.sigma_q)
        self.envelope_degree = int(model.model_config.polynomial_degree)
        self.coulomb_constant = float(keys.COULOMB_CONSTANT)
        self.energy_name = keys.ENERGY
        self.charge_name = keys.METATOMIC_CHARGE
        self.neighbors = NeighborListOptions(
            cutoff=self.cutoff, full_list=True, strict=True, requestor="hybridpot"
        )

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbors]

    def requested_inputs(self) -> Dict[str, ModelOutput]:
        return {self.charge_name: ModelOutput(unit="e", sample_kind="system")}

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        energy_rows: List[torch.Tensor] = []
        atom_energies: List[torch.Tensor] = []
        atom_charges: List[torch.Tensor] = []
        atom_samples: List[torch.Tensor] = []
        for s, system in enumerate(systems):
            positions = system.positions
            n = positions.shape[0]
            species = self.network.species_index(system.types)
            neighbors = system.get_neighbor_list(self.neighbors)
            pairs = neighbors.samples.values
            edge_index = torch.stack([pairs[:, 0], pairs[:, 1]]).to(torch.int64)
            vectors = neighbors.values.reshape(-1, 3)
            # total charge: metatomic's standard input; 0 from an engine that gives none
            if self.charge_name in system.known_data():
                total = system.get_data(self.charge_name).block().values.reshape(1)
            else:
                total = torch.zeros(1, dtype=positions.dtype, device=positions.device)
            batch = torch.zeros(n, dtype=torch.int64, device=positions.device)
            energies, charges = self.network(
                species, edge_index, vectors, batch, 1, total.to(positions.dtype)
            )
            coulomb = self.coulomb
            if coulomb is not None:
                energies = energies + coulomb(positions, system.cell, system.pbc, charges)
                if self.screened:
                    energies = energies + screening_energies(
                        charges,
                        edge_index,
                        vectors,
                        self.cutoff,
                        self.sigma_q,
                        self.envelope_degree,
                        self.coulomb_constant,
                    )
                induction = self.induction
                if induction is not None:
                    energies = energies + induction(
                        positions, system.cell, system.pbc, charges, species, edge_index, vectors
                    )
            atoms = torch.arange(n, device=positions.device)
            if selected_atoms is not None:
                chosen = selected_atoms.values
                atoms = chosen[chosen[:, 0] == s][:, 1].to(torch.int64)
            energies = energies.index_select(0, atoms)
            energy_rows.append(energies.sum().reshape(1, 1))
            atom_energies.append(energies.reshape(-1, 1))
            atom_charges.append(charges.index_select(0, atoms).reshape(-1, 1))
            atom_samples.append(
                torch.stack([torch.full_like(atoms, s), atoms], dim=1).to(torch.int32)
            )

        device = systems[0].positions.device if len(systems) > 0 else torch.device("cpu")
        per_atom_labels = Labels(
            ["system", "atom"],
            torch.cat(atom_samples)
            if len(atom_samples) > 0
            else torch.zeros((0, 2), dtype=torch.int32, device=device),
        )
        results: Dict[str, TensorMap] = {}
        if self.energy_name in outputs:
            if outputs[self.energy_name].sample_kind == "atom":
                values = torch.cat(atom_energies)
                samples = per_atom_labels
            else:
                values = torch.cat(energy_rows)
                samples = Labels(
                    ["system"],
                    torch.arange(len(systems), dtype=torch.int32, device=device).reshape(-1, 1),
                )
            block = TensorBlock(
                values=values,
                samples=samples,
                components=[],
                properties=Labels(
                    [self.energy_name], torch.zeros((1, 1), dtype=torch.int32, device=device)
                ),
            )
            results[self.energy_name] = TensorMap(
                Labels(["_"], torch.zeros((1, 1), dtype=torch.int32, device=device)),
                [block],
            )
        if self.charge_name in outputs:
            block = TensorBlock(
                values=torch.cat(atom_charges),
                samples=per_atom_labels,
                components=[],
                properties=Labels(
                    [self.charge_name], torch.zeros((1, 1), dtype=torch.int32, device=device)
                ),
            )
            results[self.charge_name] = TensorMap(
                Labels(["_"], torch.zeros((1, 1), dtype=torch.int32, device=device)),
                [block],
            )
        return results
