"""Labelled NaCl configurations sampled by molecular dynamics with the Tosi-Fumi model.

Each *run* builds one starting structure (a strained crystal, a crystal with a vacancy pair,
a (100) slab, or a melt), gives it thermal displacements and Maxwell-Boltzmann velocities,
equilibrates it with Langevin dynamics and then keeps a frame every ``stride`` steps.
With the default 2 fs step, friction 1/(50 fs) and stride 25, frames are 50 fs apart: the
force autocorrelation of a 64-ion crystal at 600 K measured under these settings falls
from 1 to 0.15 at 40 fs and crosses zero at ~50 fs. Runs are short and many, each with its
own temperature, strain and seed, so a data set is a spread of independent states rather
than one long correlated trajectory.

The trajectory is propagated with cheap approximate forces (by default the Tosi-Fumi
short range plus a damped shifted force Coulomb sum, :mod:`.propagator`; or the exact
calculator at a looser Coulomb accuracy), and every kept frame is then labelled by the
reference calculator at its full accuracy (1e-6). The labels are exact for the
configurations kept; only the path between them used the cheaper forces.

Every run draws its random numbers from its own child of ``numpy.random.SeedSequence(seed)``,
so a data set is reproducible from its seed.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

from ..derivatives import has_volume
from ..fileio import atomic_write_text
from .propagator import PropagationCalculator
from .structures import DEFAULT_SPECS, SamplingSpec, build_structure
from .tosi_fumi import NACL, TosiFumiCalculator

#: Steps (1 fs, strong friction) that relax the random insertion's close contacts.
MELT_RELAX_STEPS = 30


@dataclass(frozen=True)
class MDSettings:
    """Molecular dynamics settings of every run.

    Attributes:
        timestep: fs.
        friction: 1/fs, Langevin friction.
        equilibration_steps: steps before the first kept frame.
        stride: steps between kept frames.
        frames_per_run: frames kept per run.
        propagation: forces that move the atoms between kept frames: ``"dsf"`` (Tosi-Fumi
            short range + damped shifted force Coulomb, ~4x faster) or ``"exact"`` (the
            reference calculator at ``propagation_accuracy``). Kept frames are always
            labelled by the reference calculator at its own accuracy.
        propagation_accuracy: Coulomb accuracy of ``"exact"`` propagation.
    """

    timestep: float = 2.0
    friction: float = 0.02
    equilibration_steps: int = 40
    stride: int = 25
    frames_per_run: int = 8
    propagation: str = "dsf"
    propagation_accuracy: float = 1e-4

    def __post_init__(self):
        if self.propagation not in ("dsf", "exact"):
            raise ValueError(f"propagation: expected 'dsf' or 'exact', got {self.propagation!r}")
        if not (0 < self.propagation_accuracy < 1):
            raise ValueError(
                f"propagation_accuracy: expected in (0, 1), got {self.propagation_accuracy!r}"
            )
        for name in ("timestep", "friction"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        for name, least in (("equilibration_steps", 0), ("stride", 1), ("frames_per_run", 1)):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= least):
                raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")


def thermal_momenta(atoms: Atoms, temperature: float, rng: np.random.Generator) -> None:
    """Set Maxwell-Boltzmann momenta at ``temperature`` (K), zero total momentum."""
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(
        rng.standard_normal((len(atoms), 3)) * np.sqrt(masses * units.kB * temperature)
    )
    Stationary(atoms)


def _label(
    atoms: Atoms, calculator: TosiFumiCalculator, config_type: str, temperature: float
) -> Atoms:
    """A calculator-free copy of ``atoms`` with the reference labels of ``calculator``."""
    frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    frame.wrap()
    periodic = bool(has_volume(frame.pbc))
    properties = ["energy", "forces"] + (["stress"] if periodic else [])
    calculator.calculate(frame, properties)
    results = calculator.results
    frame.info["energy"] = float(results["energy"])
    if periodic:
        frame.info["stress"] = np.array(results["stress"], dtype=float)
    frame.info["charge"] = float(np.sum(results["charges"]))  # 0: every structure is neutral
    frame.info["config_type"] = config_type
    frame.info["temperature"] = float(temperature)
    frame.info["ref_energy_short"] = float(results["energy_short"])
    frame.info["ref_energy_coulomb"] = float(results["energy_coulomb"])
    frame.arrays["forces"] = np.array(results["forces"], dtype=float)
    frame.arrays["charges"] = np.array(results["charges"], dtype=float)
    calculator.reset()
    return frame


def sample_run(
    spec: SamplingSpec,
    n_frames: int,
    seed: np.random.SeedSequence | int,
    md: MDSettings | None = None,
    calculator: TosiFumiCalculator | None = None,
) -> list[Atoms]:
    """One Langevin run of ``spec``: equilibrate, then keep ``n_frames`` frames.

    Args:
        spec: the family of configurations.
        n_frames: frames to keep (>= 1).
        seed: seed (or SeedSequence) of this run.
        md: MD settings (default :class:`MDSettings`).
        calculator: the reference (default ``TosiFumiCalculator()``).

    Returns:
        ``n_frames`` labelled Atoms (see :func:`generate_nacl_dataset`).
    """
    md = md or MDSettings()
    calculator = calculator or TosiFumiCalculator(NACL)
    rng = np.random.default_rng(seed)
    temperature = float(rng.uniform(*spec.temperature))
    atoms = build_structure(spec, temperature, rng)
    if md.propagation == "dsf":
        atoms.calc = PropagationCalculator(
            calculator.params, cutoff=calculator.cutoff, switch_width=calculator.switch_width
        )
    else:
        atoms.calc = TosiFumiCalculator(
            calculator.params,
            cutoff=calculator.cutoff,
            switch_width=calculator.switch_width,
            accuracy=max(md.propagation_accuracy, calculator.accuracy),
            method=calculator.method,
            coulomb_options=calculator.coulomb_options,
        )

    def langevin(t_kelvin: float, timestep: float, friction: float) -> Langevin:
        return Langevin(
            atoms,
            timestep * units.fs,
            temperature_K=t_kelvin,
            friction=friction / units.fs,
            fixcm=False,
            rng=rng,
        )

    thermal_momenta(atoms, temperature, rng)
    if spec.kind == "melt":
        # Relax the random insertion's close contacts with a short step and strong friction.
        langevin(temperature, 1.0, 0.05).run(MELT_RELAX_STEPS)
    else:
        # Thermal start: Gaussian displacements (~0.1 Å per component at 300 K, NaCl's
        # room-temperature vibration amplitude, growing as sqrt(T)) with the
        # Maxwell-Boltzmann velocities, so that a short equilibration suffices.
        sigma = 0.1 * math.sqrt(min(temperature, 1000.0) / 300.0)
        atoms.positions += rng.normal(scale=sigma, size=atoms.positions.shape)
    dyn = langevin(temperature, md.timestep, md.friction)
    dyn.run(md.equilibration_steps)
    frames = []
    for _ in range(n_frames):
        dyn.run(md.stride)
        frames.append(_label(atoms, calculator, spec.config_type, temperature))
    return frames


def generate_nacl_dataset(
    n_configs: int,
    seed: int,
    *,
    specs: Sequence[SamplingSpec] = DEFAULT_SPECS,
    md: MDSettings | None = None,
    calculator: TosiFumiCalculator | None = None,
) -> list[Atoms]:
    """Sample labelled NaCl configurations with Langevin MD and the Tosi-Fumi reference.

    ``n_configs`` is shared among ``specs`` in proportion to their weights (largest
    remainders, so the counts add up exactly); each spec's share is split into runs of at
    most ``md.frames_per_run`` frames, each run with its own random temperature, strain
    and seed.

    Args:
        n_configs: total number of configurations (>= 1).
        seed: integer seed; the same seed gives the same data.
        specs: families of configurations (default :data:`DEFAULT_SPECS`).
        md: MD settings (default :class:`MDSettings`).
        calculator: the reference (default ``TosiFumiCalculator()``, Coulomb accuracy 1e-6).

    Returns:
        list of Atoms, in the order of ``specs``, each with ``info["energy"]`` (eV),
        ``info["stress"]`` ((6,) eV/Å³, Voigt xx yy zz yz xz xy, ASE sign; fully periodic
        cells only), ``arrays["forces"]`` ((N, 3) eV/Å), ``arrays["charges"]`` ((N,) e,
        the exact +-1), ``info["charge"]`` (0, the total charge), ``info["config_type"]``,
        ``info["temperature"]`` (K, the thermostat's) and ``info["ref_energy_short"]`` /
        ``info["ref_energy_coulomb"]`` (eV, the model's two parts of the energy).
    """
    if isinstance(n_configs, bool) or not isinstance(n_configs, (int, np.integer)):
        raise TypeError(f"n_configs: expected an int, got {type(n_configs).__name__}")
    if n_configs < 1:
        raise ValueError(f"n_configs: expected >= 1, got {n_configs}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    specs = tuple(specs)
    if not specs or not all(isinstance(s, SamplingSpec) for s in specs):
        raise TypeError("specs: expected a non-empty sequence of SamplingSpec")
    md = md or MDSettings()
    calculator = calculator or TosiFumiCalculator(NACL)

    counts = _apportion(int(n_configs), [s.weight for s in specs])
    spec_seeds = np.random.SeedSequence(int(seed)).spawn(len(specs))
    frames: list[Atoms] = []
    for spec, count, spec_seed in zip(specs, counts, spec_seeds, strict=True):
        n_runs = math.ceil(count / md.frames_per_run) if count else 0
        for run, run_seed in enumerate(spec_seed.spawn(n_runs)):
            n_frames = min(md.frames_per_run, count - run * md.frames_per_run)
            frames.extend(sample_run(spec, n_frames, run_seed, md, calculator))
    return frames


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainders)."""
    w = np.asarray(weights, dtype=float)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[k] += 1
    return counts.tolist()


def write_extxyz(atoms_list: Sequence[Atoms], path: str | os.PathLike) -> Path:
    """Write configurations to an extended XYZ file atomically.

    The file is written to a temporary name in the same folder and renamed into place, so
    a crash never leaves a half-written file under ``path``.

    Args:
        atoms_list: non-empty sequence of Atoms (labels in ``info`` / ``arrays``).
        path: destination file.

    Returns:
        The destination as a Path.
    """
    import ase.io

    if isinstance(atoms_list, Atoms):
        atoms_list = [atoms_list]
    atoms_list = list(atoms_list)
    if not atoms_list or not all(isinstance(a, Atoms) for a in atoms_list):
        raise TypeError("atoms_list: expected a non-empty sequence of ase.Atoms")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: folder {str(path.parent)!r} does not exist")
    buffer = io.StringIO()
    ase.io.write(buffer, atoms_list, format="extxyz")
    atomic_write_text(path, buffer.getvalue())
    return path


@dataclass(frozen=True)
class DemoPreset:
    """What :func:`make_demo_data` writes: counts per file and the families sampled.

    Attributes:
        n_train, n_validation, n_test: configurations in train.xyz, validation.xyz and
            test.xyz, all drawn from ``bulk_specs`` (independent runs and seeds per file).
        n_large: configurations in test_large.xyz (``large_specs``: a bigger cell than
            any in training).
        n_slab: configurations in test_slab.xyz (``slab_specs``: a surface, never seen in
            training).
        md: MD settings of every run.
    """

    n_train: int = 200
    n_validation: int = 32
    n_test: int = 32
    n_large: int = 16
    n_slab: int = 24
    bulk_specs: tuple[SamplingSpec, ...] = (
        SamplingSpec("crystal", "crystal", 2, (300.0, 1000.0), 0.03, 0.03, weight=4.0),
        SamplingSpec("vacancy", "vacancy", 2, (300.0, 1000.0), 0.02, 0.02, weight=2.0),
        SamplingSpec("melt", "melt", 2, (1500.0, 2000.0), 0.03, weight=2.0),
    )
    large_specs: tuple[SamplingSpec, ...] = (
        SamplingSpec("crystal_large", "crystal", 3, (300.0, 1000.0), 0.02, 0.02),
    )
    slab_specs: tuple[SamplingSpec, ...] = (
        SamplingSpec("slab", "slab", 2, (300.0, 900.0), 0.02, layers=4),
    )
    md: MDSettings = MDSettings()


#: A tiny preset for tests and ``--quick``: seconds, not minutes.
QUICK_PRESET = DemoPreset(
    n_train=12,
    n_validation=4,
    n_test=4,
    n_large=2,
    n_slab=2,
    md=MDSettings(equilibration_steps=10, stride=5, frames_per_run=4),
)


def make_demo_data(
    outdir: str | os.PathLike,
    seed: int = 0,
    quick: bool = False,
    preset: DemoPreset | None = None,
) -> dict[str, Path]:
    """Generate and write the demo's reference data.

    Writes ``train.xyz``, ``validation.xyz``, ``test.xyz`` (64-ion crystals at 300-1000 K
    with strains, vacancy pairs and the melt), ``test_large.xyz`` (a larger cell) and
    ``test_slab.xyz`` (a (100) slab, pbc (T, T, F)), each atomically.

    Args:
        outdir: folder to write into (created if missing).
        seed: integer seed; each file uses its own child seed.
        quick: use :data:`QUICK_PRESET` (a few seconds) instead of the full preset
            (about a minute on 2 cores).
        preset: explicit preset (overrides ``quick``).

    Returns:
        dict from ``"train"``, ``"validation"``, ``"test"``, ``"test_large"``,
        ``"test_slab"`` to the written paths.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    preset = preset or (QUICK_PRESET if quick else DemoPreset())
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    jobs = {
        "train": (preset.n_train, preset.bulk_specs),
        "validation": (preset.n_validation, preset.bulk_specs),
        "test": (preset.n_test, preset.bulk_specs),
        "test_large": (preset.n_large, preset.large_specs),
        "test_slab": (preset.n_slab, preset.slab_specs),
    }
    # Independent child seeds per file: no run is shared between train and test.
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(jobs))
    calculator = TosiFumiCalculator(NACL)
    paths = {}
    for (name, (count, specs)), file_seed in zip(jobs.items(), seeds, strict=True):
        frames = generate_nacl_dataset(
            count, int(file_seed), specs=specs, md=preset.md, calculator=calculator
        )
        paths[name] = write_extxyz(frames, outdir / f"{name}.xyz")
    return paths
