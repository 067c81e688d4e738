"""The hybrid model: E = E_short(network) + E_coulomb(network charges), with derivatives.

One forward pass:

1. attach a zero strain to positions AND cell (hybridpot.derivatives.apply_strain), so
   every later quantity (edge vectors, the Ewald mesh, the background term) sees it;
2. the equivariant network reads the strained edge vectors and predicts per-atom
   short-range energies and charges (summing exactly to each structure's total charge);
   with ``charge_model="qeq"`` it predicts electronegativities and hardnesses instead and
   the charges are the constrained minimum of the Qeq energy (:mod:`..electrostatics.qeq`,
   whose on-site energy sum chi q + (1/2) sum (J + J_self) q² joins the total);
3. the electrostatics turn those charges into per-atom Coulomb energies; with
   ``induction``, per-element polarisabilities in the charges' field add
   -(k_e/2) alpha_i e_i² per atom (:mod:`..electrostatics.induction`);
4. ONE autograd pass over the summed energy gives forces, the strain derivative (stress,
   virial) and dE/dq (the electrostatic potential at each atom).
"""

from __future__ import annotations

import math

import torch

from .. import hyperparameters as hp
from .. import keys
from ..data.graph import AtomicGraph
from ..data.segments import segment_sum
from ..derivatives import (
    apply_strain,
    cell_volume,
    energy_derivatives,
    has_dipole,
    voigt,
)
from ..electrostatics import Electrostatics, equilibrate_charges, qeq_energies
from ..electrostatics.induction import induction_energies, induction_field
from ..electrostatics.qeq import self_hardness
from ..electrostatics.screening import screening_energies
from ..nn import EquivariantNetwork
from . import response
from .config import ModelConfig


class HybridModel(torch.nn.Module):
    """Equivariant short-range network plus exact long-range electrostatics.

    Args:
        config: a :class:`ModelConfig` (see ``docs/model-config.md`` for every field).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.model_config = config
        self.network = EquivariantNetwork(
            elements=config.elements,
            cutoff=config.cutoff,
            num_layers=config.num_layers,
            hidden_irreps=config.hidden_irreps,
            l_max=config.l_max,
            parity=config.parity,
            num_radial=config.num_radial,
            radial_mlp=tuple(config.radial_mlp),
            polynomial_degree=config.polynomial_degree,
            trainable_radial=config.trainable_radial,
            product=config.product,
            self_connection=config.self_connection,
            resnet=config.resnet,
            readout_mlp=tuple(config.readout_mlp),
            avg_num_neighbors=config.avg_num_neighbors,
            atomic_energies=config.atomic_energies,
            energy_scale=config.energy_scale,
            predict_charges=True,
            charge_projection=config.charge_projection,
            charge_model=config.charge_model,
            charge_init_scale=config.charge_init_scale,
        )
        self.electrostatics = (
            Electrostatics(
                sigma_q=config.sigma_q,
                method=config.coulomb_method,
                accuracy=config.coulomb_accuracy,
            )
            if config.coulomb
            else None
        )
        # Per-element polarisabilities alpha = softplus(raw) Å³ (``induction``).
        self.polarizability_raw = None
        if config.induction:
            start = math.log(math.expm1(hp.INITIAL_POLARIZABILITY))  # softplus⁻¹
            self.polarizability_raw = torch.nn.Parameter(
                torch.full((len(config.elements),), start, dtype=torch.get_default_dtype())
            )
        self.uncertainty = None
        if config.uncertainty:
            self.attach_uncertainty()

    def attach_uncertainty(self):
        """Add an empty (uncalibrated) last-layer uncertainty state and set the config
        flag; returns it. ``hybridpot.uncertainty.fit_uncertainty`` fills it."""
        from ..uncertainty.features import last_layer_width
        from ..uncertainty.llpr import LastLayerUncertainty

        charge = self.network.charge_readout
        head = LastLayerUncertainty(
            last_layer_width(self.network.energy_readout.mlp),
            0 if charge is None else last_layer_width(charge.mlp),
        )
        reference = next(self.parameters())
        self.uncertainty = head.to(device=reference.device, dtype=reference.dtype)
        self.model_config.uncertainty = True
        return self.uncertainty

    _compiled_network = None

    def uncertainty_keys(self) -> list[str]:
        """The ``*_UNCERTAINTY`` output keys this model predicts (its calibrated ones)."""
        if self.uncertainty is None:
            return []
        names = (
            ("energy", keys.ENERGY_UNCERTAINTY),
            ("forces", keys.FORCES_UNCERTAINTY),
            ("charges", keys.CHARGES_UNCERTAINTY),
        )
        return [
            key
            for name, key in names
            if self.uncertainty.calibrated(name)
            and (name != "charges" or self.network.charge_readout is not None)
        ]

    def compile_network(self, **options) -> HybridModel:
        """Run the network through ``torch.compile`` (inference); returns ``self``.

        Only the network is compiled (inductor, full graph, dynamic shapes by default):
        the electrostatics build their real-space neighbour list with vesin on the CPU,
        which cannot be traced. The weights stay shared with the eager network, so
        ``state_dict``, saving and training are unchanged; ``compile_network(enabled=False)``
        goes back to eager. Tested against eager (forces and stress, Coulomb on) in
        ``tests/model/test_compile.py``.
        """
        if not options.pop("enabled", True):
            object.__setattr__(self, "_compiled_network", None)
            return self
        options = {"dynamic": True, "fullgraph": True, **options}
        # Stored outside the module registry so state_dict keys do not change.
        object.__setattr__(self, "_compiled_network", torch.compile(self.network, **options))
        return self

    def set_edge_chunk(self, max_edges: int | None) -> HybridModel:
        """Compute the network's messages ``max_edges`` edges at a time (None: all at
        once); returns ``self``.

        Memory then grows with the number of atoms, not with the edges times the
        features: a MACE-size model needs ~0.24 MB per atom unchunked, most of it
        per-edge tensors kept for the backward pass. Each chunk is checkpointed
        (recomputed in the backward pass), so results are unchanged to round-off and
        a call costs about one more forward pass of the edge work. For very large
        systems (10^5-10^6 atoms on one GPU); 1,000,000 edges per chunk is a good start.

        Raises:
            ValueError: ``max_edges`` not a positive integer or None.
        """
        if max_edges is not None and (
            isinstance(max_edges, bool) or not isinstance(max_edges, int) or max_edges < 1
        ):
            raise ValueError(f"max_edges must be a positive integer or None, got {max_edges!r}")
        for block in self.network.modules():
            if hasattr(block, "edge_chunk") and hasattr(block, "_messages"):
                block.edge_chunk = max_edges
        return self

    @property
    def config(self) -> dict:
        """The JSON-serialisable configuration (all fields, defaults filled in)."""
        return self.model_config.to_dict()

    @property
    def cutoff(self) -> float:
        return self.model_config.cutoff

    def forward(
        self,
        graph: AtomicGraph,
        *,
        compute_forces: bool = True,
        compute_stress: bool = True,
        create_graph: bool = False,
        compute_bec: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energy and its derivatives for a (batched) graph.

        The charges of each structure (or of each fragment, when the graph has
        fragments) sum to its total charge. A graph with an ``electric_field`` adds the
        field terms of :mod:`hybridpot.model.response`: the energy -M·E for non-periodic
        structures (in ENERGY and ENERGY_FIELD; forces follow), the forces Z*ᵀE alone for
        periodic ones; with ``induction`` the field also induces alpha_i E / k_e on every
        atom (in INDUCED_DIPOLES, DIPOLE and POLARIZATION), whose energy
        -(1/2) sum alpha_i |E|^2 / k_e joins ENERGY_FIELD (non-periodic structures).

        Args:
            graph: B structures, N atoms; edges must come from a cutoff >= the model's.
            compute_forces: return forces (N, 3) eV/Å and the electrostatic potential.
            compute_stress: return stress and virial (zeros for structures that are not
                fully periodic).
            create_graph: keep the autograd graph of the derivatives (training on forces
                or Born effective charges).
            compute_bec: return the Born effective charges Z*_i = dM/dr_i (N, 3, 3) e.

        Returns:
            dict keyed by :mod:`hybridpot.keys`: ENERGY (B,), ENERGIES (N,), ENERGY_SHORT
            (B,), ENERGY_COULOMB (B,), ENERGY_FIELD (B,), ENERGY_QEQ (B,) (0 unless
            ``charge_model="qeq"``), ENERGY_INDUCTION (B,) (0 unless ``induction``),
            CHARGES (N,), DIPOLE (B, 3) (sum q r plus the induced dipoles; zeros for
            periodic structures), POLARIZATION (B, 3) e/Å² (fully periodic
            structures, from the positions as given; zeros for the others), and when
            asked FORCES (N, 3), POTENTIAL (N,), STRESS (B, 3, 3), STRESS_VOIGT (B, 6),
            VIRIAL (B, 3, 3), BORN_EFFECTIVE_CHARGES (N, 3, 3); with ``induction``
            INDUCED_DIPOLES (N, 3) e·Å; with a fitted
            uncertainty (``config.uncertainty``) ENERGY_UNCERTAINTY (B,) eV,
            FORCES_UNCERTAINTY (N,) eV/Å and, when calibrated, CHARGES_UNCERTAINTY (N,) e
            (detached).

        The stress holds no field term (the periodic field energy is not defined).
        """
        if graph.cutoff + 1e-9 < self.cutoff:
            raise ValueError(
                f"graph edges were built with cutoff {graph.cutoff} Å, smaller than the "
                f"model's cutoff {self.cutoff} Å"
            )
        num_graphs = graph.num_graphs
        positions = graph.positions
        cell = graph.cell
        if compute_forces or compute_stress or compute_bec:
            positions = positions.detach().clone().requires_grad_(True)
        strain = None
        if compute_stress:
            strained_positions, strained_cell, strain = apply_strain(positions, cell, graph.batch)
        else:
            strained_positions, strained_cell = positions, cell

        vectors = graph.edge_vectors(strained_positions, strained_cell)
        network = self.network if self._compiled_network is None else self._compiled_network
        # The element check reads the numbers on the host: once per graph, not per call.
        elements = tuple(self.model_config.elements)
        graph.check_once(
            f"elements {elements}", lambda: self.network.embedding.species_index(graph.numbers)
        )
        charge_group, group_charge = graph.charge_groups
        out = network(
            graph.numbers,
            graph.edge_index,
            vectors,
            graph.batch,
            num_graphs,
            group_charge,
            check_numbers=False,
            charge_group=None if graph.fragment is None else charge_group,
            return_features=self.uncertainty is not None,
        )
        energies_short = out[keys.ENERGIES_SHORT]
        energies_qeq = None
        if self.model_config.charge_model == "qeq":
            charges, energies_qeq = self._equilibrate(
                out,
                graph,
                positions,
                strained_positions,
                strained_cell,
                charge_group,
                group_charge,
            )
        else:
            charges = out[keys.CHARGES]

        if self.electrostatics is not None:
            # Differentiated once, through the energy sum, unless create_graph (training
            # on forces) or no derivative at all (the caller may differentiate later).
            once = (compute_forces or compute_stress) and not create_graph
            energies_coulomb = self.electrostatics(
                strained_positions,
                strained_cell,
                graph.pbc,
                charges,
                graph.batch,
                plan=graph.coulomb_plan(self.electrostatics),
                proportional_upstream=once,
                create_graph=create_graph,
            )
            if self.model_config.screened:
                # The network owns the pairs inside its cutoff (docs/theory.md).
                energies_coulomb = energies_coulomb + screening_energies(
                    charges,
                    graph.edge_index,
                    vectors,
                    self.cutoff,
                    self.sigma_q,
                    self.model_config.polynomial_degree,
                )
        else:
            energies_coulomb = torch.zeros_like(energies_short)
        energies = energies_short + energies_coulomb
        induced = alpha = None
        if self.polarizability_raw is not None:
            induced, energies_induction, alpha = self._induction(
                graph, strained_positions, strained_cell, vectors, charges
            )
            energies = energies + energies_induction
        if energies_qeq is not None:
            energies = energies + energies_qeq

        def per_structure(values: torch.Tensor) -> torch.Tensor:
            return segment_sum(values, graph.batch, num_graphs)

        # M = sum q r from the (leaf) positions as given: its derivative is Z*.
        moments = response.dipole_moments(charges, positions, graph.batch, num_graphs)
        if induced is not None:
            moments = moments + segment_sum(induced, graph.batch, num_graphs)
        field = graph.electric_field
        energy = per_structure(energies)
        energy_field = torch.zeros_like(energy)
        if field is not None:
            energy_field = response.field_energy(moments, field, graph.pbc)
            if alpha is not None:
                # The applied field polarises the atoms too: dipoles alpha E / k_e, whose
                # energy in that field is -(1/2) alpha |E|^2 / k_e (half of -mu·E: the
                # polarisation's own cost). Their interaction with the charges' field
                # is already in -M·E (M holds alpha e); they do not depend on positions.
                applied = alpha[:, None] * field.to(alpha.dtype).index_select(0, graph.batch)
                applied = applied / keys.COULOMB_CONSTANT
                induced = induced + applied
                applied_moments = segment_sum(applied, graph.batch, num_graphs)
                energy_field = energy_field + 0.5 * response.field_energy(
                    applied_moments, field, graph.pbc
                )
                moments = moments + applied_moments
            energy = energy + energy_field

        molecule = has_dipole(graph.pbc)[:, None]
        results = {
            keys.ENERGY: energy,
            keys.ENERGIES: energies,
            keys.ENERGY_SHORT: per_structure(energies_short),
            keys.ENERGY_COULOMB: per_structure(energies_coulomb),
            keys.ENERGY_FIELD: energy_field,
            keys.ENERGY_QEQ: (
                torch.zeros_like(energy) if energies_qeq is None else per_structure(energies_qeq)
            ),
            keys.ENERGY_INDUCTION: (
                torch.zeros_like(energy) if induced is None else per_structure(energies_induction)
            ),
            keys.CHARGES: charges,
            keys.DIPOLE: torch.where(molecule, moments, torch.zeros_like(moments)),
            keys.POLARIZATION: response.polarization(
                moments, cell_volume(cell, graph.pbc), graph.pbc
            ),
        }
        if induced is not None:
            results[keys.INDUCED_DIPOLES] = induced
        if self.uncertainty is not None:
            species = self.network.embedding.species_index(graph.numbers, check=False)
            groups = (graph.batch, num_graphs)
            if graph.fragment is not None:
                groups = (charge_group, int(group_charge.shape[0]))
            results.update(
                self.uncertainty(
                    self.network,
                    out[keys.NODE_FEATURES],
                    species,
                    graph.batch,
                    num_graphs,
                    charge_groups=groups,
                )
            )
        if compute_bec:
            results[keys.BORN_EFFECTIVE_CHARGES] = response.born_effective_charges(
                moments, positions, create_graph=create_graph
            )
        # Before the energy's backward pass, which frees the graph.
        field_forces = None
        if field is not None and compute_forces and not bool(molecule.all()):
            field_forces = response.periodic_field_forces(
                moments, field, graph.pbc, positions, create_graph=create_graph
            )
        if compute_forces or compute_stress:
            wants_potential = self.electrostatics is not None and charges.requires_grad
            forces, virial, stress, extra = energy_derivatives(
                energy,
                positions,
                strain,
                cell_volume(cell, graph.pbc) if strain is not None else None,
                extra=(charges,) if wants_potential else (),
                create_graph=create_graph,
            )
            if field_forces is not None:
                forces = forces + field_forces
            results[keys.FORCES] = forces
            potential = extra[0] if wants_potential else torch.zeros_like(charges)
            if energies_qeq is not None:
                # dE/dq holds the on-site Qeq terms too; the potential is the Coulomb part.
                chi, hardness = out[keys.ELECTRONEGATIVITY], out[keys.HARDNESS]
                potential = potential - chi - (hardness + self_hardness(self.sigma_q)) * charges
            results[keys.POTENTIAL] = potential
            if compute_stress:
                results[keys.STRESS] = stress
                results[keys.STRESS_VOIGT] = voigt(stress)
                results[keys.VIRIAL] = virial
        return results

    @property
    def sigma_q(self) -> float:
        return self.model_config.sigma_q

    def polarizabilities(self) -> torch.Tensor:
        """(S,) Å³ per element of ``config.elements`` (``induction`` models only)."""
        if self.polarizability_raw is None:
            raise ValueError("this model has no polarisabilities (model config induction: false)")
        return torch.nn.functional.softplus(self.polarizability_raw)

    def _induction(self, graph, positions, cell, vectors, charges):
        """Induced dipoles (N, 3) e·Å and induction energies (N,) eV of the charges' field
        beyond the cutoff (:mod:`hybridpot.electrostatics.induction`), and the atoms'
        polarisabilities (N,) Å³; ``positions`` and ``cell`` strained when a stress is
        wanted, ``vectors`` (E, 3) their edge vectors. (An applied field's share of the
        dipoles is added in :meth:`forward`.)"""
        field = induction_field(
            self.electrostatics,
            graph.coulomb_plan(self.electrostatics),
            positions,
            cell,
            graph.pbc,
            graph.batch,
            charges,
            graph.edge_index,
            vectors,
            self.cutoff,
            self.model_config.polynomial_degree,
        )
        species = self.network.embedding.species_index(graph.numbers, check=False)
        alpha = self.polarizabilities()[species]
        return alpha[:, None] * field, induction_energies(alpha, field), alpha

    def _equilibrate(self, out, graph, leaf, positions, cell, charge_group, group_charge):
        """Qeq charges (N,) e and on-site energies (N,) eV from the network's chi and J
        (``charge_model="qeq"``): the constrained minimum of sum chi q + (1/2) sum
        (J + J_self) q² + E_coulomb(q), solved matrix-free and differentiated implicitly
        (:mod:`hybridpot.electrostatics.qeq`).

        A field on a non-periodic structure enters the minimum: its energy -M·E =
        -sum q_i r_i·E is linear in q, a shift chi_i - r_i·E (``leaf``: the positions the
        dipole is taken from). Periodic structures' charges do not see the field (their
        field energy is not defined; only the Z*ᵀE forces are applied)."""
        chi, hardness = out[keys.ELECTRONEGATIVITY], out[keys.HARDNESS]
        shifted = chi
        if graph.electric_field is not None:
            shifted = chi + response.field_potential(
                leaf, graph.electric_field, graph.pbc, graph.batch
            )
        charges = equilibrate_charges(
            shifted,
            hardness,
            positions,
            cell,
            graph.pbc,
            graph.batch,
            charge_group,
            group_charge.to(chi.dtype),
            self.electrostatics,
            plan=graph.coulomb_plan(self.electrostatics),
            tolerance=self.model_config.qeq_tolerance,
        )
        return charges, qeq_energies(chi, hardness, charges, self.sigma_q)

    def extra_repr(self) -> str:
        c = self.model_config
        return (
            f"elements={c.elements}, cutoff={c.cutoff}, coulomb={c.coulomb}, "
            f"sigma_q={c.sigma_q}, method={c.coulomb_method!r}"
        )
