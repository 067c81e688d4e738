"""Textbook ionic crystals with known Madelung constants, and random charged test cells.

Madelung convention (all crystals here): the electrostatic energy per formula unit is

    E / n_fu = -M k_e z+ z- / r0

with r0 the nearest cation-anion distance and z+, z- the magnitudes of the ionic charges
(the "reduced" constant of most tables; e.g. CaF2: z+ z- = 2, M = 2.51939, so that
E per CaF2 = -5.03878 k_e / r0). The stored values were computed with
:func:`hybridpot.testing.ewald_sum` (converged to ~1e-14; identical from conventional,
primitive, skewed and rotated cells, which the tests check) and agree with the tabulated
values to every digit given (stored: 15 significant digits of our sum):

    NaCl       1.74756459463318  (tables: 1.747564594633)
    CsCl       1.76267477307099  (tables: 1.762674773070)
    zincblende 1.63805505338879  (tables: 1.638055053388...)
    wurtzite   1.64132162737195  (ideal c/a = sqrt(8/3), u = 3/8; tables: 1.64132162737)
    fluorite   2.51939243992428  (Sherman, Chem. Rev. 11, 93 (1932): 2.51939)
    cuprite    2.22123760491948  (Cu2O, no free parameter; tables: 2.22124, i.e. 4.44248
                                  per formula unit with z+ z- absorbed)

Charges are stored as ASE initial charges (``atoms.get_initial_charges()``, e); the
Madelung bookkeeping is in ``atoms.info`` (see :func:`madelung_from_energy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ase
import numpy as np
from ase.build import make_supercell

from .ewald_reference import COULOMB_CONSTANT, reduced_basis

#: Forms a crystal can be built in (see :func:`crystal`).
FORMS = ("conventional", "primitive", "skewed", "rotated")

_FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
_FCC_PRIMITIVE = 0.5 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])
# A unimodular integer matrix (det 1): the skewed cell spans the same lattice.
_SKEW = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]])


@dataclass(frozen=True)
class Crystal:
    """An ionic crystal in its conventional cell, lengths in units of the lattice constant.

    Attributes:
        name: key in :data:`CRYSTALS`.
        madelung: reduced Madelung constant M (module docstring convention).
        lattice_constant: default a in Å.
        cell: (3, 3) conventional cell / a (rows are lattice vectors).
        symbols: chemical symbols of the basis.
        fractional: (n, 3) fractional positions of the basis in the conventional cell.
        charges: (n,) formal charges, e.
        nearest: r0 / a, the nearest cation-anion distance.
        atoms_per_formula_unit: e.g. 3 for CaF2.
        primitive: (3, 3) primitive cell / a, or None when the conventional one is primitive.
    """

    name: str
    madelung: float
    lattice_constant: float
    cell: np.ndarray
    symbols: tuple[str, ...]
    fractional: np.ndarray
    charges: tuple[float, ...]
    nearest: float
    atoms_per_formula_unit: int
    primitive: np.ndarray | None = None

    @property
    def charge_product(self) -> float:
        """z+ z-, the product of the magnitudes of the cation and anion charges (e²)."""
        q = np.asarray(self.charges)
        return float(q.max() * -q.min())


def _fcc_crystal(name, madelung, a, symbols, charges, offsets, nearest, per_fu) -> Crystal:
    """An fcc lattice with one sublattice per (symbol, charge, offset)."""
    frac = np.concatenate([_FCC + np.asarray(o) for o in offsets])
    return Crystal(
        name=name,
        madelung=madelung,
        lattice_constant=a,
        cell=np.eye(3),
        symbols=tuple(s for s in symbols for _ in range(4)),
        fractional=frac,
        charges=tuple(float(c) for c in charges for _ in range(4)),
        nearest=nearest,
        atoms_per_formula_unit=per_fu,
        primitive=_FCC_PRIMITIVE,
    )


_U = 3.0 / 8.0  # ideal wurtzite internal parameter
_C = math.sqrt(8.0 / 3.0)  # ideal c/a

CRYSTALS: dict[str, Crystal] = {
    "NaCl": _fcc_crystal(
        "NaCl", 1.74756459463318, 5.64, ("Na", "Cl"), (1, -1), ([0, 0, 0], [0.5, 0, 0]), 0.5, 2
    ),
    "CsCl": Crystal(
        name="CsCl",
        madelung=1.76267477307099,
        lattice_constant=4.12,
        cell=np.eye(3),
        symbols=("Cs", "Cl"),
        fractional=np.array([[0, 0, 0], [0.5, 0.5, 0.5]]),
        charges=(1.0, -1.0),
        nearest=math.sqrt(3.0) / 2.0,
        atoms_per_formula_unit=2,
    ),
    "zincblende": _fcc_crystal(
        "zincblende",
        1.63805505338879,
        5.41,
        ("Zn", "S"),
        (2, -2),
        ([0, 0, 0], [0.25, 0.25, 0.25]),
        math.sqrt(3.0) / 4.0,
        2,
    ),
    "wurtzite": Crystal(
        name="wurtzite",
        madelung=1.64132162737195,
        lattice_constant=3.82,
        cell=np.array([[1.0, 0, 0], [-0.5, math.sqrt(3.0) / 2.0, 0], [0, 0, _C]]),
        symbols=("Zn", "Zn", "S", "S"),
        fractional=np.array(
            [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, _U], [2 / 3, 1 / 3, 0.5 + _U]]
        ),
        charges=(2.0, 2.0, -2.0, -2.0),
        nearest=_U * _C,
        atoms_per_formula_unit=2,
    ),
    "fluorite": _fcc_crystal(
        "fluorite",
        2.51939243992428,
        5.46,
        ("Ca", "F", "F"),
        (2, -1, -1),
        ([0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]),
        math.sqrt(3.0) / 4.0,
        3,
    ),
    "cuprite": Crystal(
        name="cuprite",
        madelung=2.22123760491948,
        lattice_constant=4.27,
        cell=np.eye(3),
        symbols=("O", "O", "Cu", "Cu", "Cu", "Cu"),
        fractional=np.array(
            [
                [0, 0, 0],
                [0.5, 0.5, 0.5],
                [0.25, 0.25, 0.25],
                [0.75, 0.75, 0.25],
                [0.75, 0.25, 0.75],
                [0.25, 0.75, 0.75],
            ]
        ),
        charges=(-2.0, -2.0, 1.0, 1.0, 1.0, 1.0),
        nearest=math.sqrt(3.0) / 4.0,
        atoms_per_formula_unit=3,
    ),
}


def crystal(
    name: str,
    form: str = "conventional",
    *,
    rng: np.random.Generator | None = None,
    lattice_constant: float | None = None,
) -> ase.Atoms:
    """Build a textbook crystal with its formal charges.

    Args:
        name: a key of :data:`CRYSTALS` (NaCl, CsCl, zincblende, wurtzite, fluorite,
            cuprite).
        form: ``"conventional"`` (the textbook cell); ``"primitive"`` (the smallest cell:
            rhombohedral for the fcc crystals, the conventional cell otherwise);
            ``"skewed"`` (the primitive cell times a unimodular integer matrix: a triclinic
            cell of the same lattice, with positions moved by random lattice vectors so
            they lie outside it, and translated); ``"rotated"`` (the skewed form, randomly
            rotated and scaled by a random factor in [0.8, 1.25]).
        rng: random generator for the skewed and rotated forms (default seed 0).
        lattice_constant: Å, overrides the crystal's default.

    Returns:
        ``ase.Atoms`` (pbc True) with initial charges (e) and ``info`` keys
        ``crystal``, ``form``, ``madelung_constant``, ``nearest_distance`` (r0, Å),
        ``charge_product`` (z+ z-) and ``atoms_per_formula_unit``.
    """
    if name not in CRYSTALS:
        raise ValueError(f"name: expected one of {sorted(CRYSTALS)}, got {name!r}")
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    spec = CRYSTALS[name]
    a = spec.lattice_constant if lattice_constant is None else float(lattice_constant)
    if not (math.isfinite(a) and a > 0):
        raise ValueError(f"lattice_constant: expected a positive length in Å, got {a}")
    rng = np.random.default_rng(0) if rng is None else rng
    cell = spec.cell * a
    positions = spec.fractional @ cell
    symbols = list(spec.symbols)
    charges = np.asarray(spec.charges)
    if form != "conventional" and spec.primitive is not None:
        cell = spec.primitive * a
        symbols, positions, charges = _reduce_to_cell(symbols, positions, charges, cell)
    scale = 1.0
    if form in ("skewed", "rotated"):
        cell = _SKEW @ cell
        # Unwrap: each atom moved by a random lattice vector, all by a common offset.
        positions = positions + rng.integers(-2, 3, size=(len(positions), 3)) @ cell
        positions = positions + rng.uniform(-5.0, 5.0, size=3)
    if form == "rotated":
        rotation = _random_rotation(rng)
        scale = float(rng.uniform(0.8, 1.25))
        cell = scale * cell @ rotation.T
        positions = scale * positions @ rotation.T
    atoms = ase.Atoms(symbols=symbols, positions=positions, cell=cell, pbc=True)
    atoms.set_initial_charges(charges)
    atoms.info.update(
        crystal=name,
        form=form,
        madelung_constant=spec.madelung,
        nearest_distance=spec.nearest * a * scale,
        charge_product=spec.charge_product,
        atoms_per_formula_unit=spec.atoms_per_formula_unit,
    )
    return atoms


def madelung_from_energy(energy: float, atoms: ase.Atoms) -> float:
    """The Madelung constant M = -E r0 / (k_e z+ z- n_fu) of a crystal from its energy.

    Args:
        energy: eV, the Coulomb energy of ``atoms`` (any supercell of a crystal built by
            :func:`crystal`; the number of formula units is counted from ``len(atoms)``).
        atoms: a structure from :func:`crystal` (reads ``info``).

    Returns:
        M (dimensionless), comparable with ``atoms.info["madelung_constant"]``.
    """
    for key in ("nearest_distance", "charge_product", "atoms_per_formula_unit"):
        if key not in atoms.info:
            raise ValueError(f"atoms: expected info[{key!r}] as set by crystal(), missing")
    n_fu = len(atoms) / atoms.info["atoms_per_formula_unit"]
    r0 = atoms.info["nearest_distance"]
    return -float(energy) * r0 / (COULOMB_CONSTANT * atoms.info["charge_product"] * n_fu)


def random_ionic_cell(
    n: int,
    rng: np.random.Generator,
    *,
    triclinic: bool = True,
    net_charge: float = 0.0,
    density: float = 0.05,
    min_distance: float = 1.0,
) -> ase.Atoms:
    """A random periodic cell of ``n`` charged atoms, positions unwrapped.

    Args:
        n: number of atoms, >= 1.
        rng: random generator.
        triclinic: random triclinic cell (angles typically 60-120 degrees) if True, else
            cubic.
        net_charge: e, total charge (stored as ``info["charge"]`` too).
        density: atoms per Å³ (NaCl: 0.0446).
        min_distance: Å, smallest distance between any two atoms or images.

    Returns:
        ``ase.Atoms`` (pbc True, all atoms H) with initial charges drawn from a standard
        normal, shifted to sum to ``net_charge``; each atom is moved by a random lattice
        vector (fractional coordinates in [-2, 3)).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n: expected a positive integer, got {n}")
    if not density > 0:
        raise ValueError(f"density: expected > 0 atoms/Å³, got {density}")
    volume = n / density
    cell = np.eye(3)
    if triclinic:
        cell = cell + rng.uniform(-0.3, 0.3, size=(3, 3))
        if np.linalg.det(cell) < 0:
            cell[0] *= -1
    cell *= (volume / np.linalg.det(cell)) ** (1.0 / 3.0)
    lattice = reduced_basis(cell)
    if np.linalg.norm(lattice, axis=1).min() < min_distance:
        raise ValueError(f"density: {density} atoms/Å³ gives a cell shorter than {min_distance} Å")
    images = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    images = images @ lattice
    positions = np.zeros((0, 3))
    for _ in range(200 * n):
        if len(positions) == n:
            break
        trial = rng.uniform(0.0, 1.0, size=3) @ cell
        d = np.linalg.norm(positions[:, None, :] + images[None] - trial, axis=-1)
        if len(positions) == 0 or d.min() >= min_distance:
            positions = np.vstack([positions, trial])
    if len(positions) < n:
        raise ValueError(
            f"density: could not place {n} atoms {min_distance} Å apart at {density} atoms/Å³"
        )
    positions = positions + rng.integers(-2, 3, size=(n, 3)) @ cell
    charges = rng.normal(size=n)
    charges += (net_charge - charges.sum()) / n
    atoms = ase.Atoms(symbols=["H"] * n, positions=positions, cell=cell, pbc=True)
    atoms.set_initial_charges(charges)
    atoms.info["charge"] = float(net_charge)
    return atoms


def rocksalt_supercell(
    repeat,
    rng: np.random.Generator,
    *,
    displacement: float = 0.3,
    lattice_constant: float = 5.64,
) -> ase.Atoms:
    """A rock-salt-like ±1 system at NaCl density with randomly displaced atoms.

    Args:
        repeat: int n (an n x n x n supercell of the 8-atom cubic cell: 8 n³ atoms),
            three ints (n1, n2, n3) (8 n1 n2 n3 atoms) or a (3, 3) integer matrix P
            (cell = P @ conventional cell, 8 |det P| atoms; a non-diagonal P gives a
            triclinic cell).
        rng: random generator.
        displacement: Å, RMS displacement of each atom from its lattice site (Gaussian,
            isotropic).
        lattice_constant: Å.

    Returns:
        ``ase.Atoms`` (Na +1, Cl -1 as initial charges, pbc True, neutral).
    """
    conventional = crystal("NaCl", lattice_constant=lattice_constant)
    matrix = np.asarray(repeat)
    message = f"repeat: expected a positive integer, three of them or a 3x3 matrix, got {repeat}"
    if not np.issubdtype(matrix.dtype, np.number) or np.any(matrix != np.round(matrix)):
        raise ValueError(message)
    if matrix.ndim == 0 or matrix.shape == (3,):
        if np.any(matrix < 1):
            raise ValueError(message)
        atoms = conventional.repeat(tuple(np.broadcast_to(matrix, 3).astype(int)))
    elif matrix.shape == (3, 3) and round(abs(np.linalg.det(matrix))) >= 1:
        atoms = make_supercell(conventional, matrix.astype(int))
    else:
        raise ValueError(message)
    atoms.positions += rng.normal(scale=displacement / math.sqrt(3.0), size=(len(atoms), 3))
    atoms.info = {"charge": 0.0}
    return atoms


def _reduce_to_cell(symbols, positions, charges, cell):
    """Keep one atom per orbit of the (smaller) lattice ``cell``."""
    frac = positions @ np.linalg.inv(cell)
    frac = np.round(frac - np.floor(frac + 1e-9), 9) % 1.0
    _, keep = np.unique(frac, axis=0, return_index=True)
    keep = np.sort(keep)
    return [symbols[k] for k in keep], frac[keep] @ cell, charges[keep]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random proper rotation (det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q
