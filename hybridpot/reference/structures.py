"""The starting structures the NaCl data generator samples from.

A :class:`SamplingSpec` names a family of configurations (a strained crystal, a crystal
with a vacancy pair, a (100) slab, or a melt); :func:`build_structure` builds one starting
structure of the family, with its random strain, before thermal displacements and MD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import bulk

from ..derivatives import VOIGT_INDICES

#: Static (0 K) lattice constant of the Tosi-Fumi NaCl crystal, Å (see docs/reference.md).
A0_STATIC = 5.618
#: Linear thermal expansion used to pick the starting lattice constant at temperature T
#: (NaCl: ~4e-5 /K); a(T) = A0_STATIC (1 + ALPHA_T T). Strains are drawn around it.
ALPHA_T = 4.0e-5
#: Linear expansion of the melt box relative to the 0 K crystal. Liquid NaCl near its
#: melting point is ~40 % less dense than the room-temperature crystal (1.56 vs 2.16 g/cm^3).
MELT_EXPANSION = 1.11
#: Closest approach (Å) of unlike and like ions when a melt is built by random insertion.
MELT_MIN_DISTANCE = {"unlike": 2.4, "like": 3.0}

KINDS = ("crystal", "vacancy", "slab", "melt")


@dataclass(frozen=True)
class SamplingSpec:
    """One family of configurations.

    Attributes:
        config_type: label written to ``info["config_type"]``.
        kind: one of ``"crystal"``, ``"vacancy"`` (one cation and one anion removed),
            ``"slab"`` ((100) slab, pbc (T, T, F), vacuum on both sides) or ``"melt"``.
        repeat: conventional rock-salt cells (8 ions) per axis: 2 -> 64 ions, 3 -> 216.
            For a slab, the in-plane repeat; the slab is ``layers`` atomic layers thick.
        temperature: (T_min, T_max) K; each run draws T uniformly in the range.
        max_strain: each run draws an isotropic linear strain uniformly in [-max, max].
        max_shear: each run draws the three off-diagonal (symmetric) strain components
            uniformly in [-max, max] (triclinic cells). Not used for slabs.
        weight: share of the requested number of configurations.
        layers: atomic (100) layers of a slab (even).
        vacuum: Å of vacuum on each side of a slab.
    """

    config_type: str
    kind: str
    repeat: int
    temperature: tuple[float, float]
    max_strain: float = 0.0
    max_shear: float = 0.0
    weight: float = 1.0
    layers: int = 4
    vacuum: float = 10.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if not (isinstance(self.repeat, int) and self.repeat >= 1):
            raise ValueError(f"repeat: expected an integer >= 1, got {self.repeat!r}")
        t_min, t_max = self.temperature
        if not (0 < t_min <= t_max):
            raise ValueError(f"temperature: expected 0 < T_min <= T_max K, got {self.temperature}")
        if not (0 <= self.max_strain < 0.2 and 0 <= self.max_shear < 0.2):
            raise ValueError(
                f"max_strain and max_shear: expected in [0, 0.2), got "
                f"{self.max_strain!r} and {self.max_shear!r}"
            )
        if not self.weight > 0:
            raise ValueError(f"weight: expected > 0, got {self.weight!r}")
        if self.kind == "slab" and not (self.layers >= 2 and self.layers % 2 == 0):
            raise ValueError(f"layers: expected an even number >= 2, got {self.layers!r}")


#: The default mix: crystals of 64 and 216 ions from 300 to 1000 K with +-3 % isotropic and
#: shear strains, vacancy pairs, a (100) slab and the melt at 1500-2000 K.
DEFAULT_SPECS: tuple[SamplingSpec, ...] = (
    SamplingSpec("crystal", "crystal", 2, (300.0, 1000.0), 0.03, 0.03, weight=4.0),
    SamplingSpec("crystal", "crystal", 3, (300.0, 1000.0), 0.03, 0.03, weight=1.0),
    SamplingSpec("vacancy", "vacancy", 2, (300.0, 1000.0), 0.02, 0.02, weight=2.0),
    SamplingSpec("slab", "slab", 2, (300.0, 900.0), 0.02, weight=1.5),
    SamplingSpec("melt", "melt", 2, (1500.0, 2000.0), 0.03, weight=1.5),
)


def _strain_matrix(rng: np.random.Generator, max_strain: float, max_shear: float) -> np.ndarray:
    """(3, 3) deformation 1 + ε with random isotropic and symmetric shear parts."""
    eps = np.eye(3) * rng.uniform(-max_strain, max_strain)
    off = rng.uniform(-max_shear, max_shear, size=3)
    for value, (a, b) in zip(off, VOIGT_INDICES[3:], strict=True):
        eps[a, b] = eps[b, a] = value
    return np.eye(3) + eps


def build_structure(spec: SamplingSpec, temperature: float, rng: np.random.Generator) -> Atoms:
    """The starting structure of one run (before thermal displacements).

    Args:
        spec: what to build.
        temperature: K, sets the thermal-expansion lattice constant.
        rng: random numbers for strain and vacancy sites.

    Returns:
        Atoms with ``pbc`` (T, T, T), or (T, T, F) for a slab.
    """
    a = A0_STATIC * (1.0 + ALPHA_T * temperature)
    if spec.kind == "slab":
        atoms = bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(
            (spec.repeat, spec.repeat, spec.layers // 2)
        )
        # In-plane isotropic strain only; the slab relaxes freely along its normal.
        in_plane = 1.0 + rng.uniform(-spec.max_strain, spec.max_strain)
        atoms.set_cell(atoms.cell.array * [[in_plane], [in_plane], [1.0]], scale_atoms=True)
        atoms.center(vacuum=spec.vacuum, axis=2)
        atoms.pbc = (True, True, False)
        return atoms
    if spec.kind == "melt":
        atoms = _random_melt(spec.repeat, A0_STATIC * MELT_EXPANSION, rng)
    else:
        atoms = bulk("NaCl", "rocksalt", a=a, cubic=True).repeat(spec.repeat)
    deformation = _strain_matrix(rng, spec.max_strain, spec.max_shear)
    atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
    if spec.kind == "vacancy":
        na = np.flatnonzero(atoms.numbers == 11)
        cl = np.flatnonzero(atoms.numbers == 17)
        del atoms[[int(rng.choice(na)), int(rng.choice(cl))]]
    return atoms


def _random_melt(repeat: int, a: float, rng: np.random.Generator) -> Atoms:
    """4 repeat^3 ion pairs inserted at random in a cubic box of side ``repeat * a``.

    Random sequential insertion with a minimum distance between unlike and like ions
    (:data:`MELT_MIN_DISTANCE`): a disordered start, so the run needs no melting stage
    (a 64-ion crystal superheated to 3000 K was still partly ordered after 400 fs).
    """
    side = repeat * a
    numbers = np.tile([11, 17], 4 * repeat**3)
    positions = np.zeros((len(numbers), 3))
    for k, z in enumerate(numbers):
        for _ in range(100_000):
            trial = rng.uniform(0.0, side, 3)
            d = positions[:k] - trial
            d -= side * np.round(d / side)  # minimum image in the cubic box
            r = np.linalg.norm(d, axis=1)
            limit = np.where(
                numbers[:k] == z, MELT_MIN_DISTANCE["like"], MELT_MIN_DISTANCE["unlike"]
            )
            if not (r < limit).any():
                positions[k] = trial
                break
        else:
            raise RuntimeError(f"could not insert ion {k} of a random melt of {len(numbers)}")
    return Atoms(numbers=numbers, positions=positions, cell=[side] * 3, pbc=True)
