"""Exploration and labelling for the active-learning loop.

:func:`explore` runs short Langevin trajectories driven by the current model from each
starting structure, at each configured temperature and isotropic strain, and keeps a
frame every ``stride`` steps as an (unlabelled) candidate; a trajectory whose force
uncertainty passes ``max_force_uncertainty`` stops there and its last frame is kept
(:class:`hybridpot.uncertainty.md.UncertaintyGuard`). Every trajectory draws its random
numbers from its own seed, so exploration is reproducible.

:func:`label_structures` labels candidates with any ASE calculator named as
``"module:Class"`` plus keyword arguments.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin

from ..derivatives import has_volume
from ..reference.generate import thermal_momenta
from ..uncertainty.md import UncertaintyExceeded, UncertaintyGuard


@dataclass
class ExploreConfig:
    """How the loop explores: MD with the current model from each starting structure."""

    structures: str = ""
    """File of starting structures (crystals, melts, slabs: their periodicity is kept)."""

    temperatures: list[float] = field(default_factory=lambda: [600.0])
    """Langevin temperatures (K); every start runs at each."""

    strains: list[float] = field(default_factory=lambda: [0.0])
    """Isotropic linear strains applied to the periodic axes before MD."""

    steps: int = 100
    """MD steps per trajectory."""

    stride: int = 10
    """Steps between kept candidate frames."""

    timestep: float = 2.0
    """fs."""

    friction: float = 0.02
    """Langevin friction, 1/fs."""

    max_force_uncertainty: float | None = None
    """eV/Å: stop a trajectory (keeping its last frame) when the largest force sigma
    passes it; None: never."""


def _strained(atoms: Atoms, strain: float) -> Atoms:
    """A copy of ``atoms`` with its periodic cell vectors stretched by 1 + ``strain`` and
    the atoms moved with them (fractional coordinates kept); non-periodic axes (a slab's
    vacuum) and molecules are left alone."""
    atoms = atoms.copy()
    cell = np.asarray(atoms.cell)
    if not strain or not atoms.pbc.any() or abs(np.linalg.det(cell)) < 1e-12:
        return atoms
    fractional = np.linalg.solve(cell.T, atoms.positions.T).T
    scaled = cell * np.where(atoms.pbc, 1.0 + strain, 1.0)[:, None]
    atoms.set_cell(scaled, scale_atoms=False)
    atoms.positions = fractional @ scaled
    return atoms


def explore(model, starts: list[Atoms], config: ExploreConfig, seed: int) -> list[Atoms]:
    """Candidate frames from MD with ``model`` (a HybridCalculator each trajectory).

    Returns:
        calculator-free Atoms (numbers, positions, cell, pbc, the total charge in
        ``info``), with ``info["explore_temperature"]``, ``info["explore_strain"]`` and,
        for a trajectory stopped by the guard, ``info["uncertainty_stop"] = True``.
    """
    from ..calculator import HybridCalculator
    from ..model.io import model_total_charge_key

    key = model_total_charge_key(model)
    seeds = np.random.SeedSequence(int(seed)).spawn(
        len(starts) * len(config.temperatures) * len(config.strains)
    )
    frames: list[Atoms] = []
    run = 0
    for start in starts:
        for temperature in config.temperatures:
            for strain in config.strains:
                rng = np.random.default_rng(seeds[run])
                run += 1
                atoms = _strained(start, float(strain))
                atoms.calc = HybridCalculator(model, dtype=_dtype_name(model))
                thermal_momenta(atoms, temperature, rng)
                dyn = Langevin(
                    atoms,
                    config.timestep * units.fs,
                    temperature_K=temperature,
                    friction=config.friction / units.fs,
                    fixcm=False,
                    rng=rng,
                )
                guard = None
                if config.max_force_uncertainty is not None:
                    guard = UncertaintyGuard(atoms, config.max_force_uncertainty, "stop")
                    dyn.attach(guard, interval=1)
                info = {"explore_temperature": float(temperature), "explore_strain": strain}
                try:
                    for _ in range(config.steps // config.stride):
                        dyn.run(config.stride)
                        frames.append(_frame(atoms, key, info))
                except UncertaintyExceeded:
                    frames.append(_frame(atoms, key, {**info, "uncertainty_stop": True}))
    return frames


def _dtype_name(model) -> str:
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    return str(dtype).replace("torch.", "")


def _frame(atoms: Atoms, charge_key: str, info: dict) -> Atoms:
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    if charge_key in atoms.info:
        frame.info[charge_key] = atoms.info[charge_key]
    frame.info.update(info)
    return frame


def load_calculator(spec: str, kwargs: dict | None = None):
    """An ASE calculator from ``"module:Class"`` and keyword arguments.

    Raises:
        ValueError: ``spec`` is not ``module:Class``, or the module or class is missing.
    """
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ValueError(f"label.calculator must be 'module:Class', got {spec!r}")
    module_name, class_name = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(
            f"label.calculator {spec!r}: cannot import {module_name!r} ({error})"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"label.calculator {spec!r}: {module_name} has no {class_name!r}")
    return cls(**(kwargs or {}))


def label_structures(frames: list[Atoms], calculator) -> list[Atoms]:
    """Label ``frames`` with ``calculator``: ``info["energy"]`` (eV), ``arrays["forces"]``
    (eV/Å), ``info["stress"]`` (Voigt, eV/Å³; fully periodic cells) and
    ``arrays["charges"]`` (e) when the calculator computes charges."""
    labelled = []
    implemented = set(getattr(calculator, "implemented_properties", ()))
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        atoms.info["energy"] = float(atoms.get_potential_energy())
        atoms.arrays["forces"] = np.array(atoms.get_forces(), dtype=float)
        if bool(has_volume(atoms.pbc)) and "stress" in implemented:
            atoms.info["stress"] = np.array(atoms.get_stress(), dtype=float)
        if "charges" in implemented:
            atoms.arrays["charges"] = np.array(atoms.get_charges(), dtype=float)
        atoms.calc = None
        labelled.append(atoms)
        calculator.reset()
    return labelled
