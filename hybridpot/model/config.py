"""The hybrid model's configuration: one typed dataclass, a docstring per field.

``build_model(config)`` takes a plain dict (JSON-serialisable, saved with the model); this
dataclass gives every key its type, default and meaning, validates values, and feeds the
configuration reference in ``docs/``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field

from ase.data import atomic_numbers

from .. import hyperparameters as hp

#: Names other codes (MACE, NequIP) use for our keys: an unknown key found here is
#: answered with our name instead of the closest spelling (``r_max`` is not ``l_max``).
MACE_NAMES = {
    "r_max": "cutoff",
    "max_ell": "l_max",
    "max_L": "l_max",
    "num_interactions": "num_layers",
    "num_radial_basis": "num_radial",
    "num_bessel": "num_radial",
    "num_cutoff_basis": "polynomial_degree",
    "num_polynomial_cutoff": "polynomial_degree",
    "E0s": "atomic_energies",
    "atomic_numbers": "elements",
    "chemical_symbols": "elements",
    "type_names": "elements",
    "radial_MLP": "radial_mlp",
    "MLP_irreps": "readout_mlp",
    "num_layers_readout": "readout_mlp",
}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class ModelConfig:
    """Hyperparameters of the hybrid model. Only ``elements`` and ``cutoff`` are required."""

    elements: list[str]
    """Chemical symbols the model knows, e.g. ``["Na", "Cl"]``."""

    cutoff: float
    """Radius (Å) of the network's neighbourhood; independent of the Ewald real-space cutoff."""

    num_layers: int = hp.NUM_LAYERS
    """Number of interaction (message-passing) blocks."""

    hidden_irreps: str = hp.HIDDEN_IRREPS
    """Irreps of the node features between blocks (channels per l and parity)."""

    l_max: int = hp.L_MAX
    """Largest angular momentum of the edge spherical harmonics (0-4)."""

    parity: bool = hp.PARITY
    """O(3) (True: mirror images have equal energy) or SO(3) (False: tells enantiomers apart)."""

    num_radial: int = hp.NUM_RADIAL
    """Number of Bessel radial basis functions."""

    radial_mlp: list[int] = field(default_factory=lambda: list(hp.RADIAL_MLP))
    """Hidden widths of the MLP that maps the radial basis to tensor-product weights."""

    polynomial_degree: int = hp.POLYNOMIAL_DEGREE
    """Degree p of the smooth polynomial cutoff envelope."""

    trainable_radial: bool = hp.TRAINABLE_RADIAL
    """Learn the Bessel frequencies of the radial basis."""

    product: bool = hp.PRODUCT
    """MACE-style symmetric product (body order +1) in every interaction block but the last."""

    self_connection: str = hp.SELF_CONNECTION
    """Self-interaction per block: ``"species"`` (per-element linear), ``"linear"``, ``"none"``."""

    resnet: bool = hp.RESNET
    """Residual update of the node features where input and output irreps match."""

    readout_mlp: list[int] = field(default_factory=lambda: list(hp.READOUT_MLP))
    """Hidden widths of the MLP that reads energies and charges from the l=0 features."""

    avg_num_neighbors: float = hp.AVG_NUM_NEIGHBORS
    """Neighbour-sum normalisation; the trainer sets it from the training data."""

    atomic_energies: dict[str, float] = field(default_factory=dict)
    """Per-element reference energies (eV) added to each atom's energy: one per element, or
    none at all (empty: no shift). A dict that omits an element is an error."""

    energy_scale: float = hp.ENERGY_SCALE
    """Scale (eV) of the network's per-atom energy output; the trainer sets it from data."""

    charge_projection: str = hp.CHARGE_PROJECTION
    """How predicted charges are corrected to the total charge: ``"uniform"`` or ``"weighted"``."""

    charge_model: str = hp.CHARGE_MODEL
    """Where the charges come from: ``"latent"`` (read out of the network and projected to
    the total charge) or ``"qeq"`` (charge equilibration: the network gives per-atom
    electronegativities and hardnesses, the charges minimise the energy under the charge
    constraints; needs ``coulomb`` and ``sigma_q`` > 0; see ``docs/qeq.md``)."""

    qeq_tolerance: float = hp.QEQ_TOLERANCE
    """Relative residual at which the Qeq conjugate-gradient solve stops (``"qeq"`` only)."""

    coulomb: bool = hp.COULOMB
    """Add the Coulomb energy of the predicted charges (False: short-range-only twin)."""

    sigma_q: float = hp.SIGMA_Q
    """Width (Å) of the Gaussian charges (0 = point charges)."""

    coulomb_split: str = hp.COULOMB_SPLIT
    """How the Coulomb energy shares the range with the network: ``"cutoff"`` removes the
    Coulomb interaction of pairs inside the network's cutoff, smoothly (the network owns
    the short range, the charges what lies beyond it); ``"none"`` keeps every pair;
    ``"auto"`` (resolved when the model is built, so a saved model says which) is
    ``"cutoff"`` for latent charges and ``"none"`` for Qeq (whose charges equilibrate
    against the full interaction). See ``docs/theory.md``."""

    charge_init_scale: float | str = hp.CHARGE_INIT_SCALE
    """Scale of the initial raw charges: the charge readout's output weights are multiplied
    by it when the model is built (1 = the plain initialisation, charges of order 1 e).
    Small initial charges keep the untrained Coulomb energy small, so the charges grow
    only as far as they lower the loss. ``"auto"`` (resolved when the model is built) is
    0.1 with a Coulomb term and 1 without one (a short-range model's charges never enter
    its energy; shrinking them only slows a charge loss)."""

    induction: bool | str = hp.INDUCTION
    """Add the first-order induction energy -(k_e/2) sum_i alpha_i e_i² of learned
    per-element polarisabilities alpha (Å³) in the field e_i of the charges, each pair's
    field screened inside the cutoff: the -alpha Q² k_e / (2 R⁴) attraction of a molecule
    by an ion beyond the network's reach, which latent charges miss. Latent charges only;
    molecules, slabs and bulk cells; an applied electric field polarises the atoms too
    (alpha E / k_e); exported with the model. ``"auto"`` is resolved by the trainer from
    the training data, so a saved model says which: true for latent charges with a
    Coulomb term when a training structure or fragment carries a net charge (|Q| >= 0.01
    e: an ion), false otherwise; a model built without training data (``build_model``)
    gets false. See ``docs/theory.md``."""

    coulomb_method: str = hp.COULOMB_METHOD
    """Electrostatics: ``"auto"`` (by pbc), ``"pme"``, ``"ewald"``, ``"p3m"`` or ``"direct"``."""

    coulomb_accuracy: float = hp.COULOMB_ACCURACY
    """Target relative RMS error of the Coulomb forces; sets the Ewald/PME parameters."""

    uncertainty: bool = False
    """Carry a last-layer (LLPR) uncertainty state: energy, force and charge standard
    deviations in the outputs. Set by ``hybridpot.uncertainty.fit_uncertainty`` (or the
    training key ``uncertainty: true``) after training; its matrices and calibration
    factors are buffers in the model file."""

    @classmethod
    def from_dict(cls, config: dict) -> ModelConfig:
        """Validate ``config`` (unknown keys, missing keys, types, ranges) and fill defaults."""
        if not isinstance(config, dict):
            raise TypeError(f"model config must be a dict, got {type(config).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        for key in config:
            if key not in names:
                close = [MACE_NAMES[key]] if key in MACE_NAMES else []
                close = close or difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown model config key {key!r}{hint}")
        for key in ("elements", "cutoff"):
            if key not in config:
                raise ValueError(f"model config needs {key!r}")
        result = cls(**config)
        result.validate()
        return result

    def _check_types(self) -> None:
        """Check each field against its annotation (TypeError naming the field).

        Numbers written as text are read as numbers: YAML 1.1 (PyYAML) reads ``1e-8``,
        without a dot, as the string ``"1e-8"``.
        """
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            if kind == "float":
                if isinstance(value, str):
                    try:
                        value = float(value)
                    except ValueError:
                        pass
                if not _is_number(value) or not math.isfinite(value):
                    raise TypeError(f"{f.name} must be a finite number, got {value!r}")
                setattr(self, f.name, float(value))
            elif kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
                raise TypeError(f"{f.name} must be an integer, got {value!r}")
            elif kind == "bool" and not isinstance(value, bool):
                raise TypeError(f"{f.name} must be true or false, got {value!r}")
            elif kind == "str" and not isinstance(value, str):
                raise TypeError(f"{f.name} must be a string, got {value!r}")
            elif kind == "list[int]" and not (
                isinstance(value, (list, tuple))
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            ):
                raise TypeError(f"{f.name} must be a list of positive integers, got {value!r}")
            elif kind == "list[str]" and not (
                isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            ):
                raise TypeError(f"{f.name} must be a list of chemical symbols, got {value!r}")
            elif kind == "dict[str, float]":
                if not isinstance(value, dict):
                    raise TypeError(f"{f.name} must be a mapping {{symbol: eV}}, got {value!r}")
                for key, number in value.items():
                    if not _is_number(number) or not math.isfinite(number):
                        raise TypeError(
                            f"{f.name}[{key!r}] must be a finite number (eV), got {number!r}"
                        )

    def _resolve_charge_init_scale(self) -> None:
        """``charge_init_scale``: "auto" -> a number (see the field), then checked."""
        value = self.charge_init_scale
        if value == "auto":
            value = hp.LATENT_CHARGE_INIT_SCALE if self.coulomb else 1.0
        elif isinstance(value, str):
            try:
                value = float(value)  # YAML 1.1 reads 1e-1 as text
            except ValueError:
                raise ValueError(
                    f"charge_init_scale must be 'auto' or a number > 0, got {value!r}"
                ) from None
        self.charge_init_scale = hp.check_charge_init_scale(value)

    def _resolve_induction(self) -> None:
        """``induction``: "auto" -> false (no training data here: the trainer resolves
        "auto" from its data before it builds the model), then checked to be a bool."""
        if isinstance(self.induction, str) and self.induction == "auto":
            self.induction = False
        if not isinstance(self.induction, bool):
            raise TypeError(f"induction must be true, false or 'auto', got {self.induction!r}")

    def validate(self) -> None:
        """Raise TypeError or ValueError naming the first field with an invalid value."""
        self._check_types()
        if not isinstance(self.elements, (list, tuple)) or not self.elements:
            raise ValueError(f"elements must be a non-empty list of symbols, got {self.elements!r}")
        unknown = [s for s in self.elements if s not in atomic_numbers]
        if unknown:
            raise ValueError(f"elements contains unknown chemical symbols {unknown}")
        if len(set(self.elements)) != len(self.elements):
            raise ValueError(f"elements has duplicates: {self.elements}")
        self.elements = list(self.elements)
        if not isinstance(self.cutoff, (int, float)) or not self.cutoff > 0:
            raise ValueError(f"cutoff must be a positive number of Å, got {self.cutoff!r}")
        self.cutoff = float(self.cutoff)
        hp.check_choice(self.self_connection, "self_connection", hp.SELF_CONNECTIONS)
        for name in ("num_layers", "num_radial"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        hp.check_polynomial_degree(self.polynomial_degree)
        hp.check_l_max(self.l_max)
        hp.check_choice(self.charge_projection, "charge_projection", hp.CHARGE_PROJECTIONS)
        hp.check_choice(self.coulomb_method, "coulomb_method", hp.COULOMB_METHODS)
        hp.check_choice(self.coulomb_split, "coulomb_split", hp.COULOMB_SPLITS)
        if self.coulomb_split == "auto":  # resolved here, so saved configs say which
            self.coulomb_split = "none" if self.charge_model == "qeq" else "cutoff"
        self._resolve_charge_init_scale()
        self._resolve_induction()
        hp.check_sigma_q(self.sigma_q)
        hp.check_accuracy(self.coulomb_accuracy, "coulomb_accuracy")
        hp.check_choice(self.charge_model, "charge_model", hp.CHARGE_MODELS)
        hp.check_qeq_tolerance(self.qeq_tolerance)
        if self.charge_model == "qeq" and not (self.coulomb and self.sigma_q > 0):
            raise ValueError(
                "charge_model 'qeq' needs coulomb true and sigma_q > 0 (Gaussian charges: a "
                f"point charge's self-energy is infinite), got coulomb={self.coulomb}, "
                f"sigma_q={self.sigma_q}"
            )
        if self.charge_model == "qeq" and self.coulomb_split == "cutoff":
            raise ValueError(
                "coulomb_split 'cutoff' is for latent charges; charge_model 'qeq' equilibrates "
                "against the full Coulomb interaction (coulomb_split 'none' or 'auto')"
            )
        if self.induction and not (self.coulomb and self.charge_model == "latent"):
            raise ValueError(
                "induction needs charges that enter the energy: coulomb true and "
                f"charge_model 'latent', got coulomb={self.coulomb}, "
                f"charge_model={self.charge_model!r}"
            )
        if not self.avg_num_neighbors > 0:
            raise ValueError(f"avg_num_neighbors must be > 0, got {self.avg_num_neighbors!r}")
        if not self.energy_scale > 0:
            raise ValueError(f"energy_scale must be > 0 eV, got {self.energy_scale!r}")
        if not isinstance(self.atomic_energies, dict):
            raise ValueError(
                f"atomic_energies must be a dict {{symbol: eV}}, got {self.atomic_energies!r}"
            )
        bad = [s for s in self.atomic_energies if s not in self.elements]
        if bad:
            raise ValueError(f"atomic_energies has elements {bad} not in elements {self.elements}")
        missing = [s for s in self.elements if s not in self.atomic_energies]
        if self.atomic_energies and missing:
            raise ValueError(
                f"atomic_energies gives no energy for elements {missing} (it must list every "
                f"element of {self.elements}, or be empty); write 0.0 for an element on purpose"
            )

    @property
    def screened(self) -> bool:
        """Whether the Coulomb energy leaves out the pairs inside the cutoff (the resolved
        ``coulomb_split``)."""
        return self.coulomb and self.coulomb_split == "cutoff"

    def to_dict(self) -> dict:
        """A JSON-serialisable dict with every field."""
        return dataclasses.asdict(self)
