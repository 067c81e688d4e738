"""Madelung constants of textbook ionic crystals from hybridpot's exact electrostatics.

Each crystal is built in several cells (conventional, primitive = triclinic, skewed,
randomly rotated and scaled); the Coulomb energy of its formal charges gives the Madelung
constant M = -E r0 / (k_e z+ z- n_fu), compared with the literature value, for plain Ewald
and for particle-mesh Ewald at a tight accuracy target.

    python examples/madelung.py [--quick]
"""

import argparse
import time

from hybridpot.electrostatics import coulomb
from hybridpot.testing.crystals import CRYSTALS, FORMS, crystal, madelung_from_energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="NaCl and CsCl, two cells only")
    args = parser.parse_args()
    names = ["NaCl", "CsCl"] if args.quick else list(CRYSTALS)
    forms = FORMS[:2] if args.quick else FORMS
    print(f"{'crystal':<11} {'cell':<13} {'method':<6} {'M computed':>16} {'rel.err':>8} {'ms':>8}")
    worst = 0.0
    for name in names:
        for form in forms:
            atoms = crystal(name, form)
            charges = atoms.get_initial_charges()
            for method, accuracy in (("ewald", 1e-10), ("pme", 1e-8)):
                start = time.perf_counter()
                energy = coulomb(atoms, charges, method=method, accuracy=accuracy)["energy"]
                ms = 1e3 * (time.perf_counter() - start)
                m = madelung_from_energy(energy, atoms)
                error = abs(m / CRYSTALS[name].madelung - 1)
                worst = max(worst, error)
                print(f"{name:<11} {form:<13} {method:<6} {m:>16.12f} {error:>8.1e} {ms:>8.1f}")
    print(f"largest relative error: {worst:.1e}")


if __name__ == "__main__":
    main()
