"""Molten NaCl in a uniform electric field, and the Born effective charges of the crystal.

The hybrid model's charges respond to the geometry, so an applied field E does not act
on fixed ±1 charges but through the Born effective charges Z*_i = dM/dr_i: the calculator
adds the forces Z*_iᵀE (a periodic cell has no field energy). The example

1. computes Z* of a rattled rock-salt crystal (mean diagonal per element, the acoustic sum
   rule sum_i Z*_i = 0) with ``calc.get_property("born_effective_charges")``;
2. equilibrates a melt (Langevin, 1400 K), then runs two NVE trajectories from the same
   state, one without and one with a field along x, recording the cell dipole
   M = V·P (``polarization`` of the calculator; positions unwrapped, as ASE's integrators
   keep them) and the conserved quantity E_pot + E_kin - E·(M(t) - M(0));
3. prints the ionic current the field drives (the growth of M_x) and the drift of the
   conserved quantity, and plots both.

    python examples/field_md.py                 # 216 ions, 0.5 ps NVT + 2 x 1 ps NVE
    python examples/field_md.py --field 0.05 --model runs/hybridpot/model.pt
    python examples/field_md.py --quick         # 64 ions, 0.1 ps + 2 x 0.2 ps

Writes ``OUTPUT/field_md/``: ``steps.csv`` (every NVE step of both runs), ``field_md.png``
and ``summary.json`` (every printed number).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import add_common_arguments, obtain_model  # noqa: E402
from ase import units  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.md.langevin import Langevin  # noqa: E402
from ase.md.velocitydistribution import Stationary  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from ase.optimize import FIRE  # noqa: E402
from molten_nacl_md import molten_cell, thermalize_momenta  # noqa: E402

import hybridpot  # noqa: E402

#: (conventional cells per axis, NVT steps of 2 fs, NVE steps of 1 fs) of the two modes.
MODES = {"quick": (2, 50, 200), "full": (3, 250, 1000)}
TEMPERATURE = 1400.0  # K, above the Tosi-Fumi melting point (1064 K)


def born_effective_charges(model_path: Path, seed: int) -> dict:
    """Z* of a rattled 64-ion rock-salt crystal: mean diagonal per element and the sum."""
    crystal = bulk("NaCl", "rocksalt", a=5.62, cubic=True).repeat(2)
    crystal.rattle(0.05, seed=seed)
    crystal.calc = hybridpot.HybridCalculator(model_path=str(model_path))
    z = crystal.calc.get_property("born_effective_charges", crystal)
    charges = crystal.get_charges()
    symbols = np.array(crystal.get_chemical_symbols())
    result = {"sum_rule_max_abs": float(np.abs(z.sum(axis=0)).max())}
    for element in ("Na", "Cl"):
        pick = symbols == element
        diagonal = np.einsum("iaa->ia", z[pick])
        result[element] = {
            "z_diagonal_mean": float(diagonal.mean()),
            "z_offdiagonal_max_abs": float(np.abs(z[pick] - diagonal[:, :, None] * np.eye(3)).max()),
            "charge_mean": float(charges[pick].mean()),
        }
    return result


def nve_run(atoms, field: np.ndarray, steps: int, model_path: Path) -> list[dict]:
    """NVE (1 fs) from ``atoms`` with ``field`` (V/Å); a row per step."""
    atoms = atoms.copy()
    atoms.calc = hybridpot.HybridCalculator(model_path=str(model_path), electric_field=field)
    volume = atoms.get_volume()
    rows: list[dict] = []
    start: list[np.ndarray] = []
    dynamics = VelocityVerlet(atoms, 1.0 * units.fs)

    def record():
        epot = atoms.get_potential_energy()
        ekin = atoms.get_kinetic_energy()
        dipole = atoms.calc.get_property("polarization", atoms) * volume  # e·Å
        if not start:
            start.append(dipole.copy())
        work = float(field @ (dipole - start[0]))  # eV: e·Å × V/Å
        rows.append(
            {
                "time_fs": float(dynamics.nsteps),
                "epot_eV": epot,
                "ekin_eV": ekin,
                "dipole_x_eA": float(dipole[0]),
                "dipole_y_eA": float(dipole[1]),
                "dipole_z_eA": float(dipole[2]),
                "conserved_eV": epot + ekin - work,
                "temperature_K": atoms.get_temperature(),
            }
        )

    dynamics.attach(record, interval=1)
    dynamics.run(steps)
    return rows


def drift(rows: list[dict], n_atoms: int) -> float:
    """Least-squares slope of the conserved quantity, eV/atom/ps."""
    t = np.array([r["time_fs"] for r in rows]) * 1e-3
    h = np.array([r["conserved_eV"] for r in rows]) / n_atoms
    return float(np.polyfit(t, h, 1)[0])


def plot(runs: dict, n_atoms: int, path: Path) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), constrained_layout=True)
    for label, rows in runs.items():
        t = np.array([r["time_fs"] for r in rows]) * 1e-3
        m = np.array([r["dipole_x_eA"] for r in rows])
        h = np.array([r["conserved_eV"] for r in rows]) / n_atoms
        top.plot(t, m - m[0], label=label)
        bottom.plot(t, 1e3 * (h - h[0]), label=label)
    top.set_xlabel("time (ps)")
    top.set_ylabel("M_x(t) - M_x(0) (e·Å)")
    top.set_title("cell dipole along the field: the ionic current")
    top.legend()
    bottom.set_xlabel("time (ps)")
    bottom.set_ylabel("E_pot + E_kin - E·ΔM, per atom (meV)")
    bottom.set_title("the conserved quantity")
    bottom.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--field", type=float, default=0.1, help="V/Å, along x")
    parser.add_argument("--seed", type=int, default=0, help="seed of positions and velocities")
    args = parser.parse_args()
    if not np.isfinite(args.field) or args.field == 0:
        parser.error(f"--field: expected a finite non-zero field in V/Å, got {args.field}")
    repeat, nvt_steps, nve_steps = MODES["quick" if args.quick else "full"]
    out = Path(args.output) / "field_md"
    out.mkdir(parents=True, exist_ok=True)
    model_path = obtain_model(args.model, args.output, args.quick)

    bec = born_effective_charges(model_path, args.seed)
    print("\nBorn effective charges of a rattled 64-ion crystal:")
    for element in ("Na", "Cl"):
        b = bec[element]
        print(
            f"  {element}: mean Z*_aa {b['z_diagonal_mean']:+.4f} e (charge "
            f"{b['charge_mean']:+.4f} e), largest off-diagonal {b['z_offdiagonal_max_abs']:.4f} e"
        )
    print(f"  acoustic sum rule |sum_i Z*_i|max {bec['sum_rule_max_abs']:.2e}")

    rng = np.random.default_rng(args.seed)
    melt = molten_cell(repeat, TEMPERATURE, args.seed)
    melt.calc = hybridpot.HybridCalculator(model_path=str(model_path))
    FIRE(melt, logfile=None).run(fmax=0.2, steps=30)
    thermalize_momenta(melt, temperature_K=TEMPERATURE, rng=rng)
    Langevin(
        melt,
        2.0 * units.fs,
        temperature_K=TEMPERATURE,
        friction=0.02 / units.fs,
        fixcm=False,  # the random kicks move the centre of mass; removed before NVE
        rng=rng,
    ).run(nvt_steps)
    Stationary(melt)
    n = len(melt)
    field = np.array([args.field, 0.0, 0.0])
    print(f"\n{n} ions, melt at {TEMPERATURE:.0f} K; NVE {nve_steps} steps of 1 fs each run")
    runs = {
        "no field": nve_run(copy.deepcopy(melt), np.zeros(3), nve_steps, model_path),
        f"E_x = {args.field} V/Å": nve_run(copy.deepcopy(melt), field, nve_steps, model_path),
    }
    (plain, driven) = runs.values()
    gain = driven[-1]["dipole_x_eA"] - driven[0]["dipole_x_eA"]
    gain_plain = plain[-1]["dipole_x_eA"] - plain[0]["dipole_x_eA"]
    summary = {
        "n_atoms": n,
        "field_V_per_A": args.field,
        "nve_steps": nve_steps,
        "born_effective_charges": bec,
        "dipole_x_gain_field_eA": gain,
        "dipole_x_gain_no_field_eA": gain_plain,
        "drift_field_eV_per_atom_per_ps": drift(driven, n),
        "drift_no_field_eV_per_atom_per_ps": drift(plain, n),
        "field_work_eV_per_atom": float(args.field * gain / n),
    }
    print(f"M_x gain with field      {gain:+.3f} e·Å   (work E·ΔM {summary['field_work_eV_per_atom']:+.5f} eV/atom)")
    print(f"M_x gain without field   {gain_plain:+.3f} e·Å")
    print(f"conserved-quantity drift {summary['drift_field_eV_per_atom_per_ps']:+.2e} eV/atom/ps (field)")
    print(f"energy drift             {summary['drift_no_field_eV_per_atom_per_ps']:+.2e} eV/atom/ps (no field)")

    with open(out / "steps.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["run", *plain[0]])
        writer.writeheader()
        for label, rows in runs.items():
            writer.writerows({"run": label, **r} for r in rows)
    plot(runs, n, out / "field_md.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out / 'steps.csv'}, {out / 'field_md.png'}, {out / 'summary.json'}")


if __name__ == "__main__":
    main()
