"""NVE molecular dynamics with a hybrid model conserves energy (Coulomb term on, float64).

216-ion rock salt, a randomly initialised hybrid model (learned, position-dependent
charges), velocity Verlet. Measured here: drift -1.1e-6 eV/atom/ps at 1 fs, and the energy
fluctuation fell 4.0x when the step was halved (Verlet's dt^2), so the limits below leave
a margin of ~10x and accept ratios from 2.5 to 6.
"""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

try:  # ASE >= 3.29 renamed MaxwellBoltzmannDistribution (now deprecated)
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

import hybridpot


def run_nve(
    timestep_fs: float, duration_fs: float = 300.0, repeat: int = 3, log=None, **config
) -> tuple[float, float]:
    """(drift in eV/atom/ps from a linear fit, std of the detrended energy per atom) of a
    rock-salt cell of ``8 repeat³`` ions; ``config`` overrides model config entries;
    ``log(step, total_energy)`` is called at every step when given."""
    torch.manual_seed(0)
    model = hybridpot.build_model(
        {
            "elements": ["Na", "Cl"],
            "cutoff": 5.0,
            "hidden_irreps": "16x0e + 8x1o",
            "sigma_q": 0.5,
            "coulomb_accuracy": 1e-6,
            "atomic_energies": {"Na": -1.0, "Cl": -2.0},
            **config,
        }
    )
    atoms = bulk("NaCl", "rocksalt", 5.64, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(0.05, seed=1)
    atoms.calc = hybridpot.HybridCalculator(model=model)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    Stationary(atoms)
    energies = []
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)

    def record():
        energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
        if log is not None:
            log(len(energies) - 1, energies[-1])

    dynamics.attach(record, 1)
    dynamics.run(round(duration_fs / timestep_fs))
    e = np.asarray(energies) / len(atoms)
    t_ps = np.arange(len(e)) * timestep_fs * 1e-3
    slope, intercept = np.polyfit(t_ps, e, 1)
    assert np.isfinite(e).all()
    return slope, float(np.std(e - (slope * t_ps + intercept)))


@pytest.mark.slow  # ~50 s: 900 force evaluations of a 216-ion cell
def test_nve_energy_drift_and_fluctuation():
    drift, fluctuation = run_nve(1.0)
    assert abs(drift) < 1e-5, f"energy drift {drift:.2e} eV/atom/ps"
    _, half_step_fluctuation = run_nve(0.5)
    ratio = fluctuation / half_step_fluctuation
    assert 2.5 < ratio < 6.0, f"fluctuation ratio {ratio:.2f} for a halved step (expect ~4)"


@pytest.mark.slow  # ~90 s: a Qeq solve (~15 CG iterations) per step of a 64-ion cell
def test_nve_energy_drift_with_qeq():
    """charge_model "qeq": the charges are re-equilibrated at every step (CG to a relative
    residual of 1e-8) and the forces come from the implicit gradient. Measured: drift
    -8.8e-7 eV/atom/ps, fluctuation 2.6e-7 eV/atom (90 s with OMP_NUM_THREADS=1)."""
    drift, _ = run_nve(1.0, duration_fs=200.0, repeat=2, charge_model="qeq", qeq_tolerance=1e-8)
    assert abs(drift) < 1e-5, f"energy drift {drift:.2e} eV/atom/ps"
