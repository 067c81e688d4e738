"""ASE calculator for hybrid models."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from . import keys
from .data.fragments import fragments_from_atoms
from .data.graph import check_electric_field
from .data.verlet import VerletGraphs
from .derivatives import has_dipole, has_volume, voigt
from .device import resolve_device

_DTYPES = {"float64": torch.float64, "float32": torch.float32}

# Properties that need the derivative pass (forces and dE/dq come from the same backward).
_NEEDS_FORCES = {"forces", "electrostatic_potential", "forces_uncertainty"}


class HybridCalculator(Calculator):
    """Energy, forces, stress and charges of a hybrid model, through ASE.

    Args:
        model: a :class:`hybridpot.model.HybridModel` (or None with ``model_path``). It is
            never modified: when it has another dtype or device than asked, or is in
            training mode, the calculator works on a copy (``copy.deepcopy``), so later
            changes to ``model`` are not seen; otherwise it uses ``model`` itself.
        model_path: a file written by :func:`hybridpot.save_model`.
        device: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"mps"``; a device this
            machine lacks is a ValueError.
        dtype: ``"float64"`` (default) or ``"float32"``.
        total_charge_key: the ``atoms.info`` key of the total charge; default: the key the
            model was trained with (stored in the model file; ``"charge"`` for models that
            did not store one).
        fragment_key, fragment_charges_key, fragment_split_key: where the fragments are
            read from (``atoms.arrays[fragment_key]`` ids with ``atoms.info`` charges under
            ``fragment_charges_key``, one key or a list of one per fragment; or a split
            index ``atoms.info[fragment_split_key]``); each defaults to the key the model
            was trained with (stored in the model file; ``"fragment"``,
            ``"fragment_charges"`` and no split for models that did not store them), so a
            model trained on e.g. the LODE dimer files (``indexB``, ``chargeA``,
            ``chargeB``) reads their fragments as training did.
        electric_field: a uniform external field (3 numbers, V/Å) applied to every
            structure; ``atoms.info["electric_field"]`` sets it per structure instead (giving
            both is a ValueError). Non-periodic structures gain the energy -M·E, periodic
            ones the forces Z*ᵀE (see :mod:`hybridpot.model.response`).
        skin: Verlet skin (Å, >= 0). Neighbour lists (network edges and Coulomb
            real-space pairs) are built for the cutoff plus the skin and reused until an
            atom has moved more than half the skin or the cell, periodicity or species
            change; each call keeps exactly the pairs inside the cutoff, so results
            equal those of fresh lists. 0 builds fresh lists at every call.

    Results: ``energy``/``free_energy`` (eV), ``energies`` (N, eV), ``forces`` (N×3, eV/Å),
    ``stress`` (6, Voigt, eV/Å³, ASE sign), ``charges`` (N, e), and the extras
    ``energy_short``, ``energy_coulomb``, ``energy_field``, ``energy_qeq`` and
    ``energy_induction`` (eV; the parts of ``energy``, 0 where the model has no such
    term), ``induced_dipoles`` (N×3, e·Å; ``induction`` models only), ``dipole`` (3, e·Å,
    the charges' plus any induced dipoles; non-periodic
    structures only), ``polarization`` (3, e/Å²; fully periodic structures only, from the
    positions as given), ``electrostatic_potential`` (N, eV/e, dE/dq_i) and
    ``born_effective_charges`` (N×3×3, e, Z*_i[a, b] = dM_a/dr_ib; computed only when
    asked, e.g. ``calc.get_property("born_effective_charges", atoms)``). Fragments
    (by default ``atoms.arrays["fragment"]`` with ``atoms.info["fragment_charges"]``, or
    the keys the model was trained with) fix the charge of each fragment (see
    :mod:`hybridpot.data.fragments`). A model with a fitted
    uncertainty (:func:`hybridpot.uncertainty.fit_uncertainty`) adds the calibrated
    standard deviations ``energy_uncertainty`` (eV), ``forces_uncertainty`` (N, eV/Å, of
    each force component) and, when calibrated, ``charges_uncertainty`` (N, e); asking a
    model without them is a PropertyNotImplementedError. Only what is asked for is
    computed: an energy-only call skips the derivative pass, and forces skip the stress
    until the caller has asked for a stress once (from then on it comes with the forces,
    as get_stress usually follows get_forces in NPT and cell relaxations). Results are
    reused while nothing changed (positions, cell, pbc, numbers or the total
    charge, fragments or field).

    Stress: fully periodic cells get the full stress (1/V) dE/dε. A slab (exactly one
    non-periodic axis) gets the in-plane stress, normalised by the volume of the cell as
    given: V = area × the cell's length along the non-periodic axis (the ASE/LAMMPS
    convention, the volume ``atoms.get_volume()`` and ASE's cell filters use); the
    components that involve the non-periodic axis are zero. Its lattice can then be
    relaxed with e.g. ``FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])`` (z vacuum). A
    slab whose cell has no length along the non-periodic axis has no stress (ValueError);
    molecules have none (PropertyNotImplementedError).
    """

    implemented_properties = [
        "energy",
        "free_energy",
        "energies",
        "forces",
        "stress",
        "charges",
        "energy_short",
        "energy_coulomb",
        "energy_field",
        "energy_qeq",
        "energy_induction",
        "induced_dipoles",
        "dipole",
        "polarization",
        "electrostatic_potential",
        "born_effective_charges",
        "energy_uncertainty",
        "forces_uncertainty",
        "charges_uncertainty",
    ]

    def __init__(
        self,
        model=None,
        model_path=None,
        device: str = "cpu",
        dtype: str = "float64",
        total_charge_key: str | None = None,
        fragment_key: str | None = None,
        fragment_charges_key: str | list[str] | None = None,
        fragment_split_key: str | None = None,
        electric_field=None,
        skin: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        from .model import load_model

        if (model is None) == (model_path is None):
            raise ValueError("give exactly one of model= or model_path=")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self.dtype = _DTYPES[dtype]
        self.device = resolve_device(device)
        if model is None:
            model = load_model(model_path)
        elif not isinstance(model, torch.nn.Module) or not hasattr(model, "cutoff"):
            raise TypeError(f"model must be a hybridpot HybridModel, got {type(model).__name__}")
        self.model = self._prepared(model)
        if total_charge_key is None:
            from .model.io import model_total_charge_key

            total_charge_key = model_total_charge_key(model)
        if not isinstance(total_charge_key, str) or not total_charge_key:
            raise ValueError(
                f"total_charge_key must be a non-empty string, got {total_charge_key!r}"
            )
        self.total_charge_key = total_charge_key
        from .model.io import resolve_fragment_keys

        #: ``{DataConfig field: key}``: where fragments are read from (the model's by default).
        self.fragment_keys = resolve_fragment_keys(
            model, fragment_key, fragment_charges_key, fragment_split_key
        )
        self.electric_field = (
            None if electric_field is None else check_electric_field(electric_field)
        )
        self._last_conditions = None
        self._stress_asked = False
        self._graphs = VerletGraphs(self.model.cutoff, skin, dtype=self.dtype, device=self.device)

    def _prepared(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` in eval mode on the calculator's dtype and device, without touching
        the caller's object: a deep copy when anything must change."""
        tensors = [*model.parameters(), *model.buffers()]
        floats = [t for t in tensors if t.is_floating_point()]
        same = (
            not model.training
            and all(t.dtype == self.dtype for t in floats)
            and all(t.device == self.device for t in tensors)
        )
        if same:
            return model
        return copy.deepcopy(model).to(device=self.device, dtype=self.dtype).eval()

    @property
    def uq(self) -> dict[str, str]:
        """ASE name -> model output key of the uncertainties this model predicts."""
        available = getattr(self.model, "uncertainty_keys", lambda: [])()
        return {key: key for key in available}

    # ------------------------------------------------------------------ total charge
    def total_charge(self, atoms) -> float:
        """The total charge (e) of ``atoms``: ``atoms.info[total_charge_key]``, default 0.

        Raises:
            ValueError: the value is not a finite number.
        """
        value = atoms.info.get(self.total_charge_key, 0.0)
        try:
            charge = float(value)
        except (TypeError, ValueError):
            charge = math.nan
        if not math.isfinite(charge):
            raise ValueError(
                f"atoms.info[{self.total_charge_key!r}] (the total charge, e) must be a "
                f"finite number, got {value!r}"
            )
        return charge

    def conditions(self, atoms) -> tuple:
        """What besides the geometry fixes the result: ``(total charge e, fragments or
        None, field (3,) V/Å or None)``, read from ``atoms`` and the calculator.

        Raises:
            ValueError: a bad total charge, fragment assignment or field, or a field
                given both to the calculator and in ``atoms.info``.
        """
        charge = self.total_charge(atoms)
        k = self.fragment_keys
        fragments = fragments_from_atoms(
            atoms,
            fragment_key=k["fragment_key"],
            charges_key=k["fragment_charges_key"],
            split_key=k["fragment_split_key"],
            total_charge=charge,
            where="atoms",
        )
        field = atoms.info.get(keys.ELECTRIC_FIELD_INFO)
        if field is not None:
            if self.electric_field is not None:
                raise ValueError(
                    f"the electric field is given twice: electric_field= of the calculator "
                    f"and atoms.info[{keys.ELECTRIC_FIELD_INFO!r}]; give one"
                )
            field = check_electric_field(field)
        elif self.electric_field is not None:
            field = self.electric_field
        if fragments is not None:
            charge = float(fragments[1].sum())
        return charge, fragments, field

    @staticmethod
    def _same_conditions(a, b) -> bool:
        if a is None or b is None:
            return False
        (qa, fa, ea), (qb, fb, eb) = a, b
        same_fragments = (fa is None and fb is None) or (
            fa is not None
            and fb is not None
            and np.array_equal(fa[0], fb[0])
            and np.array_equal(fa[1], fb[1])
        )
        same_field = (ea is None and eb is None) or (
            ea is not None and eb is not None and np.array_equal(ea, eb)
        )
        return qa == qb and same_fragments and same_field

    def check_state(self, atoms, tol=1e-15):
        changes = super().check_state(atoms, tol)
        # A change of total charge, fragments or field must invalidate the cache as well.
        if self._last_conditions is not None:
            try:
                now = self.conditions(atoms)
            except ValueError:
                now = None  # recompute: calculate() raises the error with its message
            if not self._same_conditions(now, self._last_conditions):
                changes.append("initial_charges")
        return changes

    def _with_conditions(self, graph, conditions):
        """``graph`` with its total charge, fragments and field set from ``conditions``."""
        charge, fragments, field = conditions
        dtype, device = graph.total_charge.dtype, graph.total_charge.device
        return dataclasses.replace(
            graph,
            total_charge=torch.full_like(graph.total_charge, charge),
            fragment=None if fragments is None else torch.tensor(fragments[0], device=device),
            fragment_charge=(
                None
                if fragments is None
                else torch.tensor(fragments[1], dtype=dtype, device=device)
            ),
            electric_field=(
                None
                if field is None
                else torch.tensor(field, dtype=dtype, device=device).reshape(1, 3)
            ),
        )

    # ------------------------------------------------------------------ stress of slabs
    @staticmethod
    def _slab_stress(virial: np.ndarray, atoms) -> np.ndarray:
        """In-plane stress (3, 3) eV/Å³ of a slab from the model's virial -dE/dε (eV).

        stress = -virial / V with V = |det cell| of the cell as given (area × the cell's
        length along the non-periodic axis, the ASE/LAMMPS convention); rows and columns
        of the non-periodic axis are set to zero (no strain acts along the vacuum).
        """
        axis = [bool(p) for p in atoms.pbc].index(False)
        volume = abs(float(np.linalg.det(np.asarray(atoms.cell))))
        if not volume > 0:
            raise ValueError(
                f"the stress of a slab is normalised by the cell's length along the "
                f"non-periodic axis {axis}, but atoms.cell[{axis}] is "
                f"{np.asarray(atoms.cell)[axis].tolist()}: give it the slab's thickness "
                f"(e.g. atoms.cell[{axis}, {axis}] = vacuum + slab height)"
            )
        stress = -virial / volume
        stress[axis, :] = 0.0
        stress[:, axis] = 0.0
        return stress

    # ------------------------------------------------------------------ calculation
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        missing = [p for p in properties if p.endswith("_uncertainty") and p not in self.uq]
        if missing:
            raise PropertyNotImplementedError(
                f"{missing[0]}: this model has no such uncertainty (available: "
                f"{sorted(self.uq) or 'none; fit one with hybridpot.uncertainty.fit_uncertainty'})"
            )
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        conditions = self.conditions(atoms)
        graph = self._graphs(atoms, self.model.electrostatics)
        graph = self._with_conditions(graph, conditions)
        self._last_conditions = conditions
        n_periodic = int(np.sum(atoms.pbc))
        stress_defined = n_periodic == 3 or n_periodic == 2
        if "stress" in properties:
            self._stress_asked = True
        want_forces = bool(_NEEDS_FORCES & set(properties)) or "stress" in properties
        # Once a caller has asked for the stress (NPT, cell relaxation), it is computed
        # with the forces: the same backward pass, ~10-30% more, instead of a second
        # call when get_stress follows get_forces. MD without stress never pays for it.
        want_stress = stress_defined and (
            "stress" in properties or (want_forces and self._stress_asked)
        )
        want_bec = "born_effective_charges" in properties
        out = self.model(
            graph, compute_forces=want_forces, compute_stress=want_stress, compute_bec=want_bec
        )

        def numpy(key):
            return out[key].detach().cpu().double().numpy()

        energy = float(numpy(keys.ENERGY)[0])
        results = {
            "energy": energy,
            "free_energy": energy,
            "energies": numpy(keys.ENERGIES),
            "charges": numpy(keys.CHARGES),
            "energy_short": float(numpy(keys.ENERGY_SHORT)[0]),
            "energy_coulomb": float(numpy(keys.ENERGY_COULOMB)[0]),
            "energy_field": float(numpy(keys.ENERGY_FIELD)[0]),
            "energy_qeq": float(numpy(keys.ENERGY_QEQ)[0]),
            "energy_induction": float(numpy(keys.ENERGY_INDUCTION)[0]),
        }
        if keys.INDUCED_DIPOLES in out:
            results["induced_dipoles"] = numpy(keys.INDUCED_DIPOLES)
        if has_dipole(atoms.pbc):
            results["dipole"] = numpy(keys.DIPOLE)[0]
        if has_volume(atoms.pbc):
            results["polarization"] = numpy(keys.POLARIZATION)[0]
        if want_bec:
            results["born_effective_charges"] = numpy(keys.BORN_EFFECTIVE_CHARGES)
        if want_forces:
            results["forces"] = numpy(keys.FORCES)
            results["electrostatic_potential"] = numpy(keys.POTENTIAL)
        for name, key in self.uq.items():
            if key not in out:
                continue
            value = numpy(key)
            results[name] = float(value[0]) if key == keys.ENERGY_UNCERTAINTY else value
        if want_stress:
            if has_volume(atoms.pbc):
                results["stress"] = numpy(keys.STRESS_VOIGT)[0]
            else:
                stress = self._slab_stress(numpy(keys.VIRIAL)[0], atoms)
                results["stress"] = voigt(stress)
        for key, value in results.items():
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(f"the model returned non-finite {key}; atoms: {atoms}")
        self.results = results
