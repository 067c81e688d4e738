"""The O(3)-equivariant network: edge vectors -> per-atom short-range energies and charges.

    species -> embedding h0 (scalars)
    r_ij    -> |r_ij| -> Bessel basis x smooth envelope (radial features)
            -> r_ij / |r_ij| -> spherical harmonics Y_l, l <= l_max
    h^(t+1) = InteractionBlock_t(h^t, r_ij),   t = 0 .. num_layers - 1
    E_i = scale * (MLP(h_i^0e) - MLP(h_isolated(Z_i)^0e)) + shift[Z_i]
    q_i = MLP(h_i^0e), projected so that each structure's charges sum to its total charge

The last block computes only what the readouts need (even scalars, plus vectors for
dipoles). Inputs are the edge vectors, so forces and stress follow by autograd through them
(the caller applies the strain before computing the vectors).
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from e3nn import o3

from .. import hyperparameters as hp
from .. import keys
from .embedding import SpeciesEmbedding, check_elements
from .interaction import SELF_CONNECTIONS, InteractionBlock
from .irreps import check_l_max, exact_float64, hidden_irreps_from, sh_irreps
from .radial import RadialEmbedding, _check_cutoff
from .readout import (
    ATOMIC_DIPOLES,
    CHARGE_PROJECTIONS,
    ChargeReadout,
    DipoleReadout,
    EnergyReadout,
    QeqReadout,
    _check_mlp,
)

#: The default hidden irreps (ModelConfig's, from :mod:`hybridpot.hyperparameters`).
DEFAULT_HIDDEN_IRREPS = hp.HIDDEN_IRREPS


def _check_int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an integer {bound}, got {value}")
    return value


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


_check_choice = hp.check_choice


class EquivariantNetwork(torch.nn.Module):
    """Equivariant message-passing network for per-atom short-range energies and charges.

    Args:
        elements: chemical symbols the model handles (defines the species order).
        cutoff: Å, radius of the neighbourhood; edges at or beyond it contribute exactly 0.
        num_layers: interaction blocks (>= 1).
        hidden_irreps: features between blocks, e.g. ``"64x0e+32x1o+16x2e"``, an int (that
            many channels for every l <= l_max) or channels per l ``[64, 32, 16]``.
        l_max: largest l (0..4) of the edge spherical harmonics; hidden l must be <= l_max.
            Harmonics with l > 2 * (largest hidden l) reach no hidden irrep and are skipped.
        parity: True: O(3) (mirror images have equal energies). False: SO(3) only; all
            irreps are relabelled even so that chiral (pseudo-scalar) paths exist.
        num_radial: number of Bessel functions.
        radial_mlp: hidden widths of the per-edge MLP radial features -> path weights.
        trainable_radial: learn the Bessel wave numbers.
        polynomial_degree: degree p of the polynomial cutoff envelope (>= 2).
        avg_num_neighbors: neighbour sums are divided by it (set it from the training data).
        atomic_energies: eV per element, the shift of each atom's energy (missing = 0).
        energy_scale: eV, scale of the learned part of each atom's energy.
        predict_charges: add the charge readout (output ``keys.CHARGES``).
        charge_projection: "weighted" (learned positive weights) or "uniform".
        product: add a node-wise product of messages to every block but the last (or to
            the only one): one more body order per layer, and what lets a two-layer network
            tell enantiomers apart with parity off.
        self_connection: "species" (per-element linear), "linear" or "none".
        resnet: residual update h + block(h) where the irreps allow it.
        readout_mlp: hidden widths of the energy and charge readout MLPs.
        predict_dipoles: add a per-atom dipole readout from the l = 1 features
            (output ``keys.ATOMIC_DIPOLES``, (N, 3) e·Å; needs l = 1 hidden channels).
        charge_model: ``"latent"`` (charges read out and projected) or ``"qeq"`` (the
            readout gives ``keys.ELECTRONEGATIVITY`` and ``keys.HARDNESS`` instead of
            ``keys.CHARGES``; the model solves for the charges).
        charge_init_scale: the initial raw-charge weights are multiplied by it (latent
            charges of order ``charge_init_scale`` e before training).

    The network is built in float64 with exact constants; ``.to(torch.float32)`` casts it
    down for fast inference (cast a float64 network, never a float32 one, up or down).
    """

    def __init__(
        self,
        elements: list[str],
        cutoff: float,
        num_layers: int = hp.NUM_LAYERS,
        hidden_irreps: str | int | list[int] = hp.HIDDEN_IRREPS,
        l_max: int = hp.L_MAX,
        parity: bool = hp.PARITY,
        num_radial: int = hp.NUM_RADIAL,
        radial_mlp: tuple[int, ...] = hp.RADIAL_MLP,
        trainable_radial: bool = hp.TRAINABLE_RADIAL,
        polynomial_degree: int = hp.POLYNOMIAL_DEGREE,
        avg_num_neighbors: float = hp.AVG_NUM_NEIGHBORS,
        atomic_energies: dict[str, float] | None = None,
        energy_scale: float = hp.ENERGY_SCALE,
        predict_charges: bool = True,
        charge_projection: str = hp.CHARGE_PROJECTION,
        product: bool = hp.PRODUCT,
        self_connection: str = hp.SELF_CONNECTION,
        resnet: bool = hp.RESNET,
        readout_mlp: tuple[int, ...] = hp.READOUT_MLP,
        predict_dipoles: bool = False,
        charge_model: str = hp.CHARGE_MODEL,
        charge_init_scale: float = hp.LATENT_CHARGE_INIT_SCALE,
    ) -> None:
        super().__init__()
        elements = check_elements(elements)
        cutoff = _check_cutoff(cutoff)
        num_layers = _check_int(num_layers, "num_layers", 1)
        l_max = check_l_max(l_max)
        parity = _check_bool(parity, "parity")
        num_radial = _check_int(num_radial, "num_radial", 1)
        radial_mlp = _check_mlp(radial_mlp, "radial_mlp")
        readout_mlp = _check_mlp(readout_mlp, "readout_mlp")
        trainable_radial = _check_bool(trainable_radial, "trainable_radial")
        polynomial_degree = hp.check_polynomial_degree(polynomial_degree)
        if isinstance(avg_num_neighbors, bool) or not isinstance(avg_num_neighbors, Real):
            raise TypeError(f"avg_num_neighbors must be a number, got {avg_num_neighbors!r}")
        if not (math.isfinite(avg_num_neighbors) and avg_num_neighbors > 0):
            raise ValueError(
                f"avg_num_neighbors must be a finite positive number, got {avg_num_neighbors}"
            )
        predict_charges = _check_bool(predict_charges, "predict_charges")
        charge_projection = _check_choice(
            charge_projection, "charge_projection", CHARGE_PROJECTIONS
        )
        product = _check_bool(product, "product")
        self_connection = _check_choice(self_connection, "self_connection", SELF_CONNECTIONS)
        resnet = _check_bool(resnet, "resnet")
        predict_dipoles = _check_bool(predict_dipoles, "predict_dipoles")

        hidden = hidden_irreps_from(hidden_irreps, l_max, parity)
        vector = o3.Irrep(1, -1 if parity else 1)
        if predict_dipoles and hidden.count(vector) == 0:
            raise ValueError(
                f"predict_dipoles needs vector ({vector}) channels in hidden_irreps, "
                f"got {str(hidden)!r}"
            )

        #: JSON-serialisable constructor arguments (rebuild with EquivariantNetwork(**config)).
        self.config = dict(
            elements=list(elements),
            cutoff=cutoff,
            num_layers=num_layers,
            hidden_irreps=str(hidden),
            l_max=l_max,
            parity=parity,
            num_radial=num_radial,
            radial_mlp=list(radial_mlp),
            trainable_radial=trainable_radial,
            polynomial_degree=polynomial_degree,
            avg_num_neighbors=float(avg_num_neighbors),
            atomic_energies=None if atomic_energies is None else dict(atomic_energies),
            energy_scale=energy_scale,
            predict_charges=predict_charges,
            charge_projection=charge_projection,
            product=product,
            self_connection=self_connection,
            resnet=resnet,
            readout_mlp=list(readout_mlp),
            predict_dipoles=predict_dipoles,
            charge_model=charge_model,
            charge_init_scale=charge_init_scale,
        )
        self.elements = elements
        self.cutoff = cutoff
        self.num_species = len(elements)
        self.irreps_hidden = hidden
        self.predict_charges = predict_charges
        self.predict_dipoles = predict_dipoles
        self.needs_one_hot = self_connection == "species"

        num_scalars = hidden.count("0e")
        self.num_scalars = num_scalars
        self.embedding = SpeciesEmbedding(elements, num_scalars)
        self.register_buffer("species_range", torch.arange(self.num_species), persistent=False)
        self.radial = RadialEmbedding(cutoff, num_radial, trainable_radial, polynomial_degree)
        # Y_l with l > 2 * hidden.lmax cannot couple two hidden irreps (triangle rule).
        self.irreps_sh = sh_irreps(min(l_max, 2 * hidden.lmax), parity)
        self.sh = o3.SphericalHarmonics(
            self.irreps_sh,
            normalize=False,
            normalization="component",
            irreps_in=o3.Irreps([(1, vector)]),
        )

        last_out = o3.Irreps(f"{num_scalars}x0e")
        if predict_dipoles:
            last_out = last_out + o3.Irreps([(hidden.count(vector), vector)])
        blocks = []
        irreps_in = o3.Irreps(f"{num_scalars}x0e")
        for t in range(num_layers):
            last = t == num_layers - 1
            irreps_out = last_out if last else hidden
            # The product goes in every block but the last: there it would need every hidden
            # irrep from the edges instead of the scalars alone, for 3x the training cost
            # and little gain (measured, see docs/network.md). A single block gets it.
            with_product = product and (not last or num_layers == 1)
            block = InteractionBlock(
                irreps_in=irreps_in,
                irreps_out=irreps_out,
                irreps_sh=self.irreps_sh,
                num_species=self.num_species,
                num_radial=num_radial,
                radial_mlp=radial_mlp,
                avg_num_neighbors=avg_num_neighbors,
                product=with_product,
                irreps_node=hidden,
                self_connection=self_connection,
                resnet=resnet,
            )
            blocks.append(block)
            irreps_in = block.gate.irreps_out
        self.blocks = torch.nn.ModuleList(blocks)
        self.irreps_out = irreps_in
        # The readouts slice the first num_scalars columns: they must be the 0e block.
        assert self.irreps_out[0] == (num_scalars, o3.Irrep("0e"))

        self.energy_readout = EnergyReadout(
            num_scalars, readout_mlp, elements, atomic_energies, energy_scale
        )
        hp.check_choice(charge_model, "charge_model", hp.CHARGE_MODELS)
        self.charge_model = charge_model
        if not predict_charges:
            self.charge_readout = None
        elif charge_model == "qeq":
            self.charge_readout = QeqReadout(num_scalars, readout_mlp)
        else:
            self.charge_readout = ChargeReadout(
                num_scalars, readout_mlp, charge_projection, charge_init_scale
            )
        self.dipole_readout = DipoleReadout(self.irreps_out, vector) if predict_dipoles else None
        # e3nn builds in the default dtype; cast to float64 with exact constants.
        exact_float64(self)

    # ------------------------------------------------------------------ helpers
    def _check_inputs(
        self, numbers, edge_index, edge_vectors, batch, num_graphs, total_charge, charge_group
    ):
        dtype = self.embedding.weight.dtype
        n = numbers.shape[0]
        if numbers.dim() != 1:
            raise ValueError(f"numbers must have shape (N,), got {tuple(numbers.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}")
        if edge_index.dtype != torch.long:
            raise TypeError(f"edge_index must be int64, got {edge_index.dtype}")
        if edge_vectors.shape != (edge_index.shape[1], 3):
            raise ValueError(
                f"edge_vectors must have shape (E, 3) = ({edge_index.shape[1]}, 3), "
                f"got {tuple(edge_vectors.shape)}"
            )
        if edge_vectors.dtype != dtype:
            raise TypeError(
                f"edge_vectors must have the network's dtype {dtype}, got {edge_vectors.dtype} "
                f"(convert the network with .to(dtype) or the graph with .to(dtype=...))"
            )
        if batch.shape != (n,):
            raise ValueError(f"batch must have shape (N,) = ({n},), got {tuple(batch.shape)}")
        if isinstance(num_graphs, bool) or not isinstance(num_graphs, int) or num_graphs < 1:
            raise ValueError(f"num_graphs must be an integer >= 1, got {num_graphs!r}")
        if charge_group is not None:
            if charge_group.shape != (n,) or charge_group.dtype != torch.long:
                raise ValueError(
                    f"charge_group must be an int64 tensor of shape (N,) = ({n},), got "
                    f"{charge_group.dtype} {tuple(charge_group.shape)}"
                )
            if total_charge is None or total_charge.dim() != 1:
                raise ValueError(
                    "with charge_group, total_charge must be given, shape (G,): the charge "
                    "of each group"
                )
        elif total_charge is not None and total_charge.shape != (num_graphs,):
            raise ValueError(
                f"total_charge must have shape (B,) = ({num_graphs},), "
                f"got {tuple(total_charge.shape)}"
            )

    @staticmethod
    def edge_lengths_and_directions(
        edge_vectors: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E, 3) Å -> lengths (E,) Å and unit vectors (E, 3); a zero vector gives (0, 0).

        Written so that value and gradient stay finite for coincident atoms (r = 0).
        """
        r2 = (edge_vectors * edge_vectors).sum(-1)
        nonzero = r2 > 0
        r_safe = torch.sqrt(torch.where(nonzero, r2, torch.ones_like(r2)))
        r = torch.where(nonzero, r_safe, torch.zeros_like(r2))
        return r, edge_vectors / r_safe.unsqueeze(-1)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        numbers: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vectors: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
        total_charge: torch.Tensor | None = None,
        check_numbers: bool = True,
        charge_group: torch.Tensor | None = None,
        return_features: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Per-atom outputs of a batch of N atoms in B structures with E directed edges.

        Args:
            numbers: (N,) int64 atomic numbers (each must be one of ``elements``).
            edge_index: (2, E) int64, rows (i, j); the message of edge i -> j goes to i.
            edge_vectors: (E, 3) Å, r_ij = r_j - r_i + S_ij @ cell, in the network's dtype.
            batch: (N,) int64 structure index of each atom.
            num_graphs: B.
            total_charge: (B,) e, the charge each structure's charges sum to (default 0).
            check_numbers: check that every number is a known element (reads values on
                the host: a sync on a GPU); False for numbers already checked.
            charge_group: (N,) int64, the charge group (fragment) of each atom, indexing
                ``total_charge`` (then (G,) e, one charge per group); None: one group per
                structure. See :attr:`hybridpot.data.AtomicGraph.charge_groups`.
            return_features: also return ``keys.NODE_FEATURES``, the even scalars the
                readouts read, (N + S, num_scalars): the N atoms, then one isolated atom
                of each of the S elements (what the last-layer uncertainty needs).

        Returns:
            dict with ``keys.ENERGIES_SHORT`` (N,) eV, ``keys.CHARGES`` (N,) e (if
            ``predict_charges``) and ``keys.ATOMIC_DIPOLES`` (N, 3) e·Å (if
            ``predict_dipoles``).
        """
        self._check_inputs(
            numbers, edge_index, edge_vectors, batch, num_graphs, total_charge, charge_group
        )
        species = self.embedding.species_index(numbers, check=check_numbers)
        n_atoms = species.shape[0]
        # One extra, edge-less "isolated atom" per element rides along with the batch: the
        # readout subtracts its energy, so an atom without neighbours gets exactly its
        # shift (reference energy), and E_short -> sum of shifts as atoms separate.
        species_ext = torch.cat([species, self.species_range])
        h = self.embedding(species_ext)
        node_attrs = (
            torch.nn.functional.one_hot(species_ext, self.num_species).to(h.dtype)
            if self.needs_one_hot
            else h
        )
        r, unit = self.edge_lengths_and_directions(edge_vectors)
        sh = self.sh(unit)
        radial = self.radial(r)
        for block in self.blocks:
            h = block(h, node_attrs, edge_index, sh, radial)

        scalars = h[:, : self.num_scalars]
        out = {keys.ENERGIES_SHORT: self.energy_readout(scalars, species, n_atoms)}
        if return_features:
            out[keys.NODE_FEATURES] = scalars
        scalars, h = scalars[:n_atoms], h[:n_atoms]
        if self.charge_model == "qeq" and self.charge_readout is not None:
            # The charges come from the model's Qeq solve (it needs the electrostatics).
            chi, hardness = self.charge_readout(scalars)
            out[keys.ELECTRONEGATIVITY], out[keys.HARDNESS] = chi, hardness
        elif self.charge_readout is not None:
            if total_charge is None:
                total_charge = torch.zeros(num_graphs, dtype=h.dtype, device=h.device)
            if charge_group is None:
                groups, num_groups = batch, num_graphs
            else:
                groups, num_groups = charge_group, int(total_charge.shape[0])
            out[keys.CHARGES] = self.charge_readout(scalars, groups, num_groups, total_charge)
        if self.dipole_readout is not None:
            out[ATOMIC_DIPOLES] = self.dipole_readout(h)
        return out

    def extra_repr(self) -> str:
        return (
            f"elements={self.elements}, cutoff={self.cutoff}, hidden={self.irreps_hidden}, "
            f"sh={self.irreps_sh}"
        )
