"""NVT then NVE molecular dynamics of molten NaCl with the hybrid model's ASE calculator.

Ions are placed at random (unlike ions >= 2.4 Å apart, like ions >= 3.0 Å) in a cubic box
at the liquid's density (:func:`hybridpot.reference.structures.build_structure`, the
generator's melt; a superheated crystal takes far longer to melt in a small cell),
thermalised with Langevin dynamics (NVT) at 1400 K, above the Tosi-Fumi model's melting
point of 1064 K, then run at constant energy with velocity Verlet (NVE, 1 fs steps, model in
float64). The example writes the trajectory and a plot of the potential, kinetic and total
energy against time, and prints the drift of the total energy in the NVE stage (slope of a
least-squares line, eV/atom/ps), the fluctuation of the total energy relative to that of
the kinetic energy, the temperatures and the ions' mean squared displacement.

    python examples/molten_nacl_md.py                 # 216 ions, 1 ps NVT + 1 ps NVE
    python examples/molten_nacl_md.py --model runs/hybridpot/model.pt --temperature 1500
    python examples/molten_nacl_md.py --quick         # 64 ions, 0.2 ps + 0.2 ps

Writes ``OUTPUT/molten_nacl_md/``: ``md.traj`` (ASE trajectory, a frame every
``--interval`` steps of both stages, with energies, forces and charges), ``energies.csv``
(every step: stage, time, potential, kinetic and total energy per atom, temperature),
``energy.png`` (the plot) and ``summary.json`` (every printed number).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import add_common_arguments, obtain_model  # noqa: E402
from ase import units  # noqa: E402
from ase.io.trajectory import Trajectory  # noqa: E402
from ase.md.langevin import Langevin  # noqa: E402
from ase.md.velocitydistribution import Stationary  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from ase.optimize import FIRE  # noqa: E402

import hybridpot  # noqa: E402

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE: the same function under its former name
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
from hybridpot.reference import SamplingSpec  # noqa: E402
from hybridpot.reference.structures import build_structure  # noqa: E402

#: (conventional cells per axis, NVT steps, NVE steps) of the two modes.
MODES = {"quick": (2, 100, 200), "full": (3, 500, 1000)}
#: fs; NVT may take longer steps than NVE, whose energy conservation we measure at 1 fs.
NVT_TIMESTEP = 2.0
NVE_TIMESTEP = 1.0
#: Optimiser steps (FIRE) that relax the random start's close contacts before MD.
PRE_RELAX_STEPS = 30
#: 1/fs; Langevin friction of the NVT stage (velocity relaxation time 50 fs).
FRICTION = 0.02


def molten_cell(repeat: int, temperature: float, seed: int):
    """4 repeat^3 Na-Cl pairs at random in a cubic box of the melt's density, pbc True."""
    spec = SamplingSpec("melt", "melt", repeat, (temperature, temperature))
    return build_structure(spec, temperature, np.random.default_rng(seed))


def run_stage(dynamics, atoms, n_steps: int, stage: str, time_fs: list, rows: list) -> None:
    """Run ``n_steps`` of ``dynamics``, appending one row per step (and the start)."""
    n = len(atoms)
    t0 = time_fs[0]
    timestep_fs = dynamics.dt / units.fs

    def record():
        epot = atoms.get_potential_energy() / n
        ekin = atoms.get_kinetic_energy() / n
        rows.append(
            {
                "stage": stage,
                "time_fs": t0 + dynamics.nsteps * timestep_fs,
                "epot_eV_per_atom": epot,
                "ekin_eV_per_atom": ekin,
                "etot_eV_per_atom": epot + ekin,
                "temperature_K": atoms.get_temperature(),
            }
        )

    dynamics.attach(record, interval=1)
    dynamics.run(n_steps)
    time_fs[0] = rows[-1]["time_fs"]


def drift_fit(time_fs: np.ndarray, etot: np.ndarray) -> tuple[float, float]:
    """(slope in eV/atom/ps, intercept) of the least-squares line through E_tot(t)."""
    slope, intercept = np.polyfit(time_fs * 1e-3, etot, 1)
    return float(slope), float(intercept)


def plot(rows: list, fit: tuple[float, float], path: Path) -> None:
    """Potential, kinetic and total energy per atom against time; the NVE total, zoomed."""
    t = np.array([r["time_fs"] for r in rows]) * 1e-3
    epot, ekin, etot = (
        np.array([r[k] for r in rows])
        for k in ("epot_eV_per_atom", "ekin_eV_per_atom", "etot_eV_per_atom")
    )
    nve = np.array([r["stage"] == "NVE" for r in rows])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), constrained_layout=True)
    reference = epot[nve].mean()
    top.plot(t, epot - reference, label="potential")
    top.plot(t, ekin, label="kinetic")
    top.plot(t, etot - reference, label="total")
    top.axvline(t[nve][0], color="grey", linestyle=":")
    top.text(t[nve][0], top.get_ylim()[1], " NVE", va="top")
    top.text(t[0], top.get_ylim()[1], " NVT (Langevin)", va="top")
    top.set_xlabel("time (ps)")
    top.set_ylabel(f"energy per atom (eV)\n(potential, total shifted by {-reference:+.3f})")
    top.legend(loc="center right")
    slope, intercept = fit
    bottom.plot(t[nve], 1e3 * (etot[nve] - intercept), label="total energy")
    bottom.plot(t[nve], 1e3 * slope * t[nve], "--", label=f"fit: {slope:.2e} eV/atom/ps")
    bottom.set_xlabel("time (ps)")
    bottom.set_ylabel(f"NVE total energy per atom, {-intercept:+.4f} eV (meV)")
    bottom.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--temperature", type=float, default=1400.0, help="K, NVT target")
    parser.add_argument("--nvt-steps", type=int, default=None, help="NVT steps of 2 fs")
    parser.add_argument("--nve-steps", type=int, default=None, help="NVE steps of 1 fs")
    parser.add_argument("--interval", type=int, default=10, help="steps between saved frames")
    parser.add_argument("--seed", type=int, default=0, help="seed of positions and velocities")
    args = parser.parse_args()
    repeat, nvt_steps, nve_steps = MODES["quick" if args.quick else "full"]
    nvt_steps = nvt_steps if args.nvt_steps is None else args.nvt_steps
    nve_steps = nve_steps if args.nve_steps is None else args.nve_steps
    if not args.temperature > 0:
        parser.error(f"--temperature: expected a positive temperature in K, got {args.temperature}")
    if nvt_steps < 0 or nve_steps < 2 or args.interval < 1:
        parser.error(
            f"expected --nvt-steps >= 0, --nve-steps >= 2 and --interval >= 1, got "
            f"{nvt_steps}, {nve_steps} and {args.interval}"
        )
    out = Path(args.output) / "molten_nacl_md"
    out.mkdir(parents=True, exist_ok=True)
    model_path = obtain_model(args.model, args.output, args.quick)

    rng = np.random.default_rng(args.seed)
    atoms = molten_cell(repeat, args.temperature, args.seed)
    # float64 (the calculator's default): the NVE stage measures energy conservation.
    atoms.calc = hybridpot.HybridCalculator(model_path=str(model_path), dtype="float64")
    # Random insertion leaves close contacts (~0.7 eV/atom above the liquid): a few
    # optimiser steps remove them, so the thermostat does not have to.
    FIRE(atoms, logfile=None).run(fmax=0.2, steps=PRE_RELAX_STEPS)
    thermalize_momenta(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    n = len(atoms)
    # Density: mass (amu) x 1.66054e-24 g / (volume (Å^3) x 1e-24 cm^3).
    density = atoms.get_masses().sum() * 1.66054 / atoms.get_volume()
    print(
        f"\n{atoms.get_chemical_formula()}: {n} ions at random in a "
        f"{atoms.cell.lengths()[0]:.3f} Å cubic box ({density:.3f} g/cm^3)"
    )

    rows: list[dict] = []
    clock = [0.0]
    with Trajectory(
        out / "md.traj", "w", atoms, properties=["energy", "forces", "charges"]
    ) as traj:
        nvt = Langevin(
            atoms,
            NVT_TIMESTEP * units.fs,
            temperature_K=args.temperature,
            friction=FRICTION / units.fs,
            fixcm=False,  # the random kicks move the centre of mass; removed before NVE
            rng=rng,
        )
        nvt.attach(traj.write, interval=args.interval)
        print(f"NVT: {nvt_steps} Langevin steps of {NVT_TIMESTEP} fs at {args.temperature} K ...")
        run_stage(nvt, atoms, nvt_steps, "NVT", clock, rows)
        Stationary(atoms)  # zero total momentum (temperature kept) for the NVE stage
        start_positions = atoms.get_positions(wrap=False).copy()
        nve = VelocityVerlet(atoms, NVE_TIMESTEP * units.fs)
        nve.attach(traj.write, interval=args.interval)
        print(f"NVE: {nve_steps} velocity Verlet steps of {NVE_TIMESTEP} fs ...")
        run_stage(nve, atoms, nve_steps, "NVE", clock, rows)

    with open(out / "energies.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    stage = np.array([r["stage"] for r in rows])
    t = np.array([r["time_fs"] for r in rows])
    etot = np.array([r["etot_eV_per_atom"] for r in rows])
    ekin = np.array([r["ekin_eV_per_atom"] for r in rows])
    temperature = np.array([r["temperature_K"] for r in rows])
    nve_rows = stage == "NVE"
    nvt_temperature = temperature[stage == "NVT"]
    slope, intercept = drift_fit(t[nve_rows], etot[nve_rows])
    residual = etot[nve_rows] - (intercept + slope * t[nve_rows] * 1e-3)
    # Mean squared displacement over the NVE stage (ASE keeps positions unwrapped during
    # MD): a liquid's grows linearly in time (~6 D t), a crystal's saturates at ~0.1 Å^2.
    displacement = atoms.get_positions(wrap=False) - start_positions
    msd = {
        s: float((displacement[atoms.numbers == z] ** 2).sum(axis=1).mean())
        for s, z in (("Na", 11), ("Cl", 17))
    }
    charges = atoms.get_charges()
    summary = {
        "model": str(model_path),
        "n_atoms": n,
        "target_temperature_K": args.temperature,
        "nvt_steps": nvt_steps,
        "nve_steps": nve_steps,
        "nve_duration_ps": float((t[nve_rows][-1] - t[nve_rows][0]) * 1e-3),
        # The random start releases potential energy: the first half of NVT heats up.
        "nvt_mean_temperature_K": float(nvt_temperature[len(nvt_temperature) // 2 :].mean())
        if nvt_steps
        else None,
        "nve_mean_temperature_K": float(temperature[nve_rows].mean()),
        "drift_eV_per_atom_per_ps": slope,
        "etot_std_eV_per_atom": float(residual.std()),
        "ekin_std_eV_per_atom": float(ekin[nve_rows].std()),
        "etot_over_ekin_fluctuation": float(residual.std() / ekin[nve_rows].std()),
        "msd_nve_A2": msd,
        "charges_mean": {
            s: float(charges[atoms.numbers == z].mean()) for s, z in (("Na", 11), ("Cl", 17))
        },
        "charges_total": float(charges.sum()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(rows, (slope, intercept), out / "energy.png")

    if nvt_steps:
        print(
            f"NVT mean temperature        {summary['nvt_mean_temperature_K']:10.1f} K (second half)"
        )
    print(f"NVE mean temperature        {summary['nve_mean_temperature_K']:10.1f} K")
    print(f"NVE duration                {summary['nve_duration_ps']:10.3f} ps")
    print(f"NVE std(E_total)/std(E_kin) {summary['etot_over_ekin_fluctuation']:10.2e}")
    duration_s = summary["nve_duration_ps"] * 1e-12
    # D ~ MSD / (6 t) in cm^2/s (1 Å^2 = 1e-16 cm^2); rough over a short run, which
    # includes the ballistic start. Liquid NaCl near 1400 K: ~1e-4 cm^2/s.
    diffusion = {s: msd[s] * 1e-16 / (6.0 * duration_s) for s in msd}
    summary["diffusion_cm2_per_s"] = diffusion
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(
        f"MSD in NVE (Å^2)            Na {msd['Na']:.3f}, Cl {msd['Cl']:.3f}  (MSD/6t: Na "
        f"{diffusion['Na']:.1e}, Cl {diffusion['Cl']:.1e} cm^2/s)"
    )
    print(
        f"learned charges (e)         Na {summary['charges_mean']['Na']:+.3f}, "
        f"Cl {summary['charges_mean']['Cl']:+.3f}, total {summary['charges_total']:+.1e}"
    )
    print(f"NVE energy drift            {slope:10.2e} eV/atom/ps")
    print(f"wrote {out}/md.traj, energies.csv, energy.png, summary.json")


if __name__ == "__main__":
    main()
