"""Evaluate an exported model WITHOUT hybridpot (run as a subprocess by the tests).

    python run_exported.py MODEL STRUCTURES.extxyz OUT.npz [--nve STEPS]

``import hybridpot`` is made to fail first, so this proves that the file needs only
torch + metatomic. For each structure it writes energy (eV), forces (eV/Å), stress
(eV/Å³, Voigt; fully periodic cells only, zeros otherwise) and charges (e); with
``--nve`` it runs that many velocity-Verlet steps (0.5 fs) of the first structure and
writes the total energy of each step.
"""

import importlib.abc
import sys


class _NoHybridpot(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hybridpot" or name.startswith("hybridpot."):
            raise ImportError(f"{name} is blocked: the exported model must run without it")
        return None


sys.meta_path.insert(0, _NoHybridpot())
try:
    import hybridpot  # noqa: F401
except ImportError:
    pass
else:  # pragma: no cover - the block above always works
    raise SystemExit("hybridpot could be imported; the test would prove nothing")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
from ase import units  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from metatomic.torch import ModelOutput  # noqa: E402
from metatomic_ase import MetatomicCalculator  # noqa: E402


def main(argv):
    model, structures, out = argv[:3]
    calculator = MetatomicCalculator(model, device="cpu", check_consistency=True)
    frames = ase.io.read(structures, ":")
    results = {"energy": [], "forces": [], "stress": [], "charges": []}
    for atoms in frames:
        atoms.calc = calculator
        results["energy"].append(atoms.get_potential_energy())
        results["forces"].append(atoms.get_forces())
        stress = atoms.get_stress() if atoms.pbc.all() else np.zeros(6)
        results["stress"].append(stress)
        charge = calculator.run_model(atoms, {"charge": ModelOutput(sample_kind="atom")})
        results["charges"].append(charge["charge"].block().values.detach().numpy()[:, 0])
    arrays = {
        "energy": np.array(results["energy"]),
        "stress": np.array(results["stress"]),
    }
    for k, frame_values in enumerate(zip(results["forces"], results["charges"])):
        arrays[f"forces_{k}"], arrays[f"charges_{k}"] = frame_values
    if "--nve" in argv:
        steps = int(argv[argv.index("--nve") + 1])
        atoms = frames[0].copy()
        atoms.calc = calculator
        rng = np.random.default_rng(0)
        masses = atoms.get_masses()[:, None]
        atoms.set_momenta(rng.normal(0, 1, (len(atoms), 3)) * np.sqrt(masses * units.kB * 300))
        dyn = VelocityVerlet(atoms, 0.5 * units.fs)
        totals = []
        for _ in range(steps):
            dyn.run(1)
            totals.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())
        arrays["nve_total"] = np.array(totals)
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
