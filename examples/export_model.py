"""Export a trained model to one self-contained file and check it against the Python model.

``hybridpot export model.pt -o model-deployed.pt`` (here: :func:`hybridpot.export_model`)
writes a TorchScript file in the metatomic format: network, charge projection,
electrostatics with its parameter choice, and the metadata. Any engine that speaks
metatomic loads it without hybridpot; this example loads it in ASE with
``metatomic_ase.MetatomicCalculator`` and compares energy, forces, stress and charges with
:class:`hybridpot.HybridCalculator` on a rattled, sheared 64-ion NaCl cell, a charged cell
(one Cl removed, total charge +1) and a (100) slab.

    python examples/export_model.py                  # trains a small model first if needed
    python examples/export_model.py --model runs/hybridpot/model.pt
    python examples/export_model.py --quick

Needs the deploy extra (``pip install 'hybridpot[deploy]'``). Writes
``OUTPUT/export_model/model-deployed.pt`` and ``comparison.json`` (every printed number).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from _common import add_common_arguments, obtain_model
from ase.build import bulk

import hybridpot


def structures() -> dict:
    """The three test structures: bulk, charged bulk, slab."""
    crystal = bulk("NaCl", "rocksalt", 5.62, cubic=True) * (2, 2, 2)
    crystal.set_cell(crystal.cell.array @ [[1, 0.01, 0], [0.01, 1, 0], [0, 0, 1]], scale_atoms=True)
    crystal.rattle(0.05, seed=0)
    charged = crystal.copy()
    del charged[[a.index for a in charged if a.symbol == "Cl"][0]]
    charged.info["charge"] = 1.0
    slab = bulk("NaCl", "rocksalt", 5.62, cubic=True) * (2, 2, 1)
    slab.center(vacuum=8.0, axis=2)
    slab.pbc = (True, True, False)
    slab.rattle(0.05, seed=1)
    return {"bulk": crystal, "charged": charged, "slab": slab}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    args = parser.parse_args()
    try:
        from metatomic.torch import ModelOutput
        from metatomic_ase import MetatomicCalculator
    except ImportError:
        raise SystemExit(
            "this example needs the deploy extra: pip install 'hybridpot[deploy]'"
        ) from None

    model_path = obtain_model(args.model, args.output, args.quick)
    folder = Path(args.output) / "export_model"
    folder.mkdir(parents=True, exist_ok=True)
    deployed = folder / "model-deployed.pt"
    # Training writes float32 weights; HybridCalculator evaluates in float64 by default,
    # so the file is exported in float64 too (hybridpot export --dtype float64) and the
    # two compute the same function in the same precision.
    model = hybridpot.load_model(model_path).to(torch.float64)
    hybridpot.export_model(model, deployed, name="NaCl example model")
    print(f"exported {model_path} -> {deployed} ({deployed.stat().st_size / 1e6:.1f} MB)")

    python = hybridpot.HybridCalculator(model=model)
    exported = MetatomicCalculator(str(deployed))
    summary = {}
    print(
        f"{'structure':<10} {'energy eV':>16} {'dE rel':>9} {'dF rel':>9} {'dS rel':>9}"
        f" {'dq max e':>9}"
    )
    for name, atoms in structures().items():
        values = {}
        for label, calculator in (("python", python), ("exported", exported)):
            a = atoms.copy()
            a.calc = calculator
            values[label] = {
                "energy": a.get_potential_energy(),
                "forces": a.get_forces(),
                "stress": a.get_stress() if a.pbc.all() else np.zeros(6),
            }
        values["python"]["charges"] = python.get_property("charges", atoms)
        charges = exported.run_model(atoms, {"charge": ModelOutput(sample_kind="atom")})
        charges = charges["charge"].block().values.detach().numpy()[:, 0]
        values["exported"]["charges"] = charges
        p, e = values["python"], values["exported"]
        row = {
            "energy_eV": p["energy"],
            "energy_relative": abs(e["energy"] - p["energy"]) / abs(p["energy"]),
            "forces_relative": float(
                np.abs(e["forces"] - p["forces"]).max() / np.abs(p["forces"]).max()
            ),
            "stress_relative": float(
                np.abs(e["stress"] - p["stress"]).max() / max(np.abs(p["stress"]).max(), 1e-300)
            ),
            "charges_max_e": float(np.abs(e["charges"] - p["charges"]).max()),
        }
        summary[name] = row
        print(
            f"{name:<10} {row['energy_eV']:16.8f} {row['energy_relative']:9.1e} "
            f"{row['forces_relative']:9.1e} {row['stress_relative']:9.1e} "
            f"{row['charges_max_e']:9.1e}"
        )
    worst = max(
        max(r["energy_relative"], r["forces_relative"], r["stress_relative"])
        for r in summary.values()
    )
    print(f"largest relative difference: {worst:.2e}")
    (folder / "comparison.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
