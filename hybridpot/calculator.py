"""ASE calculator for hybrid models."""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from . import keys
from .data.graph import graph_from_atoms

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


class HybridCalculator(Calculator):
    """Energy, forces, stress and charges of a hybrid model, through ASE.

    Args:
        model: a :class:`hybridpot.model.HybridModel` (or None with ``model_path``).
        model_path: a file written by :func:`hybridpot.save_model`.
        device: torch device, e.g. ``"cpu"`` or ``"cuda"``.
        dtype: ``"float64"`` (default) or ``"float32"``.

    Results: ``energy``/``free_energy`` (eV), ``energies`` (N, eV), ``forces`` (N×3, eV/Å),
    ``stress`` (6, Voigt, eV/Å³, ASE sign; fully periodic cells only), ``charges`` (N, e),
    and the extras ``energy_short``, ``energy_coulomb`` (eV), ``dipole`` (3, e·Å; zeros for
    periodic cells) and ``electrostatic_potential`` (N, eV/e). The total charge is read
    from ``atoms.info["charge"]`` (default 0). Results are reused while nothing changed.
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
        "dipole",
    ]

    def __init__(
        self,
        model=None,
        model_path=None,
        device: str = "cpu",
        dtype: str = "float64",
        **kwargs,
    ):
        super().__init__(**kwargs)
        from .model import load_model

        if (model is None) == (model_path is None):
            raise ValueError("give exactly one of model= or model_path=")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        if model is None:
            model = load_model(model_path)
        self.dtype = _DTYPES[dtype]
        self.device = torch.device(device)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self._last_charge: float | None = None

    def check_state(self, atoms, tol=1e-15):
        changes = super().check_state(atoms, tol)
        # A change of total charge must invalidate the cache as well.
        if self._last_charge is not None and float(atoms.info.get("charge", 0.0)) != (
            self._last_charge
        ):
            changes.append("initial_charges")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        self._last_charge = float(atoms.info.get("charge", 0.0))
        graph = graph_from_atoms(atoms, self.model.cutoff, dtype=self.dtype).to(self.device)
        periodic = bool(atoms.pbc.all())
        out = self.model(graph, compute_forces=True, compute_stress=periodic)

        def numpy(key):
            return out[key].detach().cpu().double().numpy()

        energy = float(numpy(keys.ENERGY)[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": numpy(keys.ENERGIES),
            "forces": numpy(keys.FORCES),
            "charges": numpy(keys.CHARGES),
            "energy_short": float(numpy(keys.ENERGY_SHORT)[0]),
            "energy_coulomb": float(numpy(keys.ENERGY_COULOMB)[0]),
            "dipole": numpy(keys.DIPOLE)[0],
            "electrostatic_potential": numpy(keys.POTENTIAL),
        }
        if periodic:
            self.results["stress"] = numpy(keys.STRESS_VOIGT)[0]
        for key, value in self.results.items():
            if not np.all(np.isfinite(value)):
                raise FloatingPointError(f"the model returned non-finite {key}; atoms: {atoms}")
