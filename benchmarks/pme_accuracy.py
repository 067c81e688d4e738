"""Calibration sweep: requested vs MEASURED relative RMS force error of the automatic parameters.

``hybridpot.electrostatics.tuning.choose_parameters`` turns a target relative RMS force
error (``accuracy``) into a smearing, a real-space cutoff and a mesh. This sweep runs
``hybridpot.electrostatics.coulomb`` (float64, 1 thread) at those automatic parameters on
the cells below and compares its forces with the independent NumPy Ewald sum
(:func:`hybridpot.testing.ewald_sum`, converged to ~1e-13; cached in
``benchmarks/results/cache/``, keyed by a hash of the cell, positions, charges and
sigma_q). It prints a table and writes JSON (atomically) of requested vs measured error
(``ratio`` = measured / requested; the contract is ratio <= 1, the calibration goal as
close to 1 as the cells that set the parameters allow) with the chosen parameters, and
the errors of the stress (relative to its largest component), the potential dE/dq
(relative to its largest value) and the energy, which the tests also hold to the target.

Cells (NaCl density 0.0446 atoms/Å³ unless said; seeds fixed):

    rocksalt-d0.1-N    rock salt ±1, atoms displaced 0.1 Å RMS (small forces: a large
                       RELATIVE error for a given absolute error)
    rocksalt-d0.3-N    the same, 0.3 Å RMS
    tric-rocksalt-N    triclinic rock-salt supercell (P = [[n,0,0],[1,n,0],[-1,1,n]]), 0.1 Å
    tric2-rocksalt-520 another one, P = [[4,1,0],[0,4,1],[1,0,4]], 0.1 Å
    random-pm1-N       random ±1 charges in a cubic box (min distance 2 Å): disordered
    random-tric-N      random triclinic cell, normal charges (min distance 1 Å)
    charged-N          random triclinic cell with net charge N/20 e (background term)
    sparse-tric-300    random triclinic cell at 0.01 atoms/Å³ (d = 4.6 Å), normal charges
    <crystal>-d0.1-N   other textbook crystals (hybridpot.testing.crystal: CsCl, fluorite,
                       zincblende, wurtzite, NaCl's primitive fcc cell), displaced 0.1 Å;
                       CsCl is the worst cell (its perfect lattice already has mesh errors)

each with sigma_q = 0 and 1 Å, for PME and P3M (``--methods`` adds Ewald on N <= 1000),
at the targets ``--accuracies`` (1e-3 1e-4 1e-5). ``--decompose`` also measures the
real-space part alone (same smearing and cutoff, converged mesh) and the mesh part alone
(same smearing and mesh, converged cutoff), in units of F0 = k_e <q²> / d², the scale of
the error model.

    nice -n 10 python benchmarks/pme_accuracy.py   # 264 runs: ~3 min cached, ~9 min not
    python benchmarks/pme_accuracy.py --quick --output /tmp/q.json   # < 1 min, N <= 512
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "results" / "cache"
K_E = 14.399645478425667  # eV Å / e², as in hybridpot.testing.ewald_reference


def rocksalt(repeat, displacement, seed):
    from hybridpot.testing import rocksalt_supercell

    atoms = rocksalt_supercell(repeat, np.random.default_rng(seed), displacement=displacement)
    return atoms, atoms.get_initial_charges()


def random_pm1(n, seed):
    from hybridpot.testing import random_ionic_cell

    rng = np.random.default_rng(seed)
    atoms = random_ionic_cell(n, rng, triclinic=False, density=0.0446, min_distance=2.0)
    q = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    rng.shuffle(q)
    if n % 2:
        q[0] = 0.0
    return atoms, q


def random_cell(n, seed, net_charge=0.0, density=0.0446):
    from hybridpot.testing import random_ionic_cell

    atoms = random_ionic_cell(
        n, np.random.default_rng(seed), net_charge=net_charge, density=density
    )
    return atoms, atoms.get_initial_charges()


def displaced_crystal(name, form, repeat, displacement, seed):
    """A textbook crystal (hybridpot.testing.crystal) repeated, atoms displaced (Å RMS)."""
    from hybridpot.testing import crystal

    atoms = crystal(name, form).repeat(repeat)
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=displacement / np.sqrt(3.0), size=atoms.positions.shape)
    return atoms, atoms.get_initial_charges()


def tric(n):
    return [[n, 0, 0], [1, n, 0], [-1, 1, n]]


#: name -> (builder, N). N from 250 to 8,000.
CELLS = {
    "rocksalt-d0.1-512": (lambda: rocksalt(4, 0.1, 1), 512),
    "rocksalt-d0.3-512": (lambda: rocksalt(4, 0.3, 2), 512),
    "tric-rocksalt-512": (lambda: rocksalt(tric(4), 0.1, 3), 512),
    "tric2-rocksalt-520": (lambda: rocksalt([[4, 1, 0], [0, 4, 1], [1, 0, 4]], 0.1, 12), 520),
    "random-pm1-512": (lambda: random_pm1(512, 4), 512),
    "random-tric-512": (lambda: random_cell(512, 5), 512),
    "charged-500": (lambda: random_cell(500, 6, net_charge=25.0), 500),
    "sparse-tric-300": (lambda: random_cell(300, 13, density=0.01), 300),
    "cscl-d0.1-250": (lambda: displaced_crystal("CsCl", "conventional", 5, 0.1, 40), 250),
    "cscl-d0.1-432": (lambda: displaced_crystal("CsCl", "conventional", 6, 0.1, 14), 432),
    "cscl-d0.1-686": (lambda: displaced_crystal("CsCl", "conventional", 7, 0.1, 41), 686),
    "cscl-d0.1-1024": (lambda: displaced_crystal("CsCl", "conventional", 8, 0.1, 15), 1024),
    "fluorite-d0.1-324": (lambda: displaced_crystal("fluorite", "conventional", 3, 0.1, 16), 324),
    "fluorite-d0.1-768": (lambda: displaced_crystal("fluorite", "conventional", 4, 0.1, 43), 768),
    "zincblende-d0.1-512": (
        lambda: displaced_crystal("zincblende", "conventional", 4, 0.1, 17),
        512,
    ),
    "wurtzite-d0.1-500": (lambda: displaced_crystal("wurtzite", "conventional", 5, 0.1, 18), 500),
    "nacl-prim-d0.1-432": (lambda: displaced_crystal("NaCl", "primitive", 6, 0.1, 19), 432),
    "rocksalt-d0.1-1728": (lambda: rocksalt(6, 0.1, 7), 1728),
    "tric-rocksalt-4096": (lambda: rocksalt(tric(8), 0.1, 8), 4096),
    "random-pm1-4096": (lambda: random_pm1(4096, 9), 4096),
    "rocksalt-d0.3-8000": (lambda: rocksalt(10, 0.3, 10), 8000),
    "rocksalt-d0.1-8000": (lambda: rocksalt(10, 0.1, 11), 8000),
}
QUICK_CELLS = ["rocksalt-d0.1-512", "tric-rocksalt-512", "random-pm1-512", "charged-500"]


def rel_rms(values, reference):
    error = np.sqrt(((values - reference) ** 2).sum(axis=-1).mean())
    return float(error / np.sqrt((reference**2).sum(axis=-1).mean()))


def rel_max(values, reference):
    return float(np.abs(values - reference).max() / np.abs(reference).max())


def reference(atoms, q, sigma_q, use_cache=True):
    """NumPy Ewald sum (forces, stress, potential, energy), cached on disk."""
    from hybridpot.testing import ewald_sum

    cell = np.asarray(atoms.cell, dtype=np.float64)
    key = hashlib.sha256()
    for array in (atoms.positions, q, cell, np.array([sigma_q])):
        key.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    path = CACHE / f"pme_accuracy_{key.hexdigest()[:20]}.npz"
    if use_cache and path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    result = ewald_sum(atoms.positions, q, cell, sigma_q=sigma_q)
    out = {k: np.asarray(result[k]) for k in ("forces", "stress", "potential", "energy")}
    if use_cache:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, path)
    return out


def force_scale(atoms, q):
    """F0 = k_e <q²> / d² (eV/Å), d = (V/N)^(1/3)."""
    d = (abs(atoms.get_volume()) / len(atoms)) ** (1.0 / 3.0)
    return K_E * float(np.mean(q**2)) / d**2, d


def run_one(atoms, q, sigma_q, method, accuracy, ref, decompose):
    from hybridpot.electrostatics import choose_parameters, coulomb

    volume = abs(float(np.linalg.det(np.asarray(atoms.cell))))
    params = choose_parameters(
        volume, len(atoms), method=method, accuracy=accuracy, sigma_q=sigma_q
    )
    t0 = time.perf_counter()
    out = coulomb(atoms, q, sigma_q=sigma_q, method=method, accuracy=accuracy)
    seconds = time.perf_counter() - t0
    measured = rel_rms(out["forces"], ref["forces"])
    row = {
        "method": method,
        "requested": accuracy,
        "measured": measured,
        "ratio": measured / accuracy,
        "stress_error": rel_max(out["stress"], ref["stress"]),
        "potential_error": rel_max(out["potential"], ref["potential"]),
        "energy_error": abs(out["energy"] - float(ref["energy"])) / abs(float(ref["energy"])),
        "seconds": seconds,
        "smearing": params.smearing,
        "real_space_cutoff": params.real_space_cutoff,
        "mesh_spacing": params.mesh_spacing,
        "mesh_shape": None if method == "ewald" else list(params.mesh_shape(atoms.cell)),
        "nodes": params.interpolation_nodes,
        "k_cutoff": params.k_cutoff,
    }
    if decompose and method != "ewald":
        f0, _ = force_scale(atoms, q)
        rms_ref = float(np.sqrt((ref["forces"] ** 2).sum(axis=-1).mean()))
        s, rc = params.smearing, params.real_space_cutoff
        # Real space alone: converged mesh (h/s = 0.08 with p = 7 is ~1e-8 relative).
        try:
            real = coulomb(
                atoms,
                q,
                sigma_q=sigma_q,
                method="pme",
                accuracy=accuracy,
                smearing=s,
                real_space_cutoff=rc,
                mesh_spacing=0.1 * s,
                interpolation_nodes=7,
            )
            row["real_abs_F0"] = rel_rms(real["forces"], ref["forces"]) * rms_ref / f0
        except ValueError:
            row["real_abs_F0"] = None
        # Mesh alone: converged real space (erfc tail ~1e-12 at r_c = 7.4 s).
        mesh = coulomb(
            atoms,
            q,
            sigma_q=sigma_q,
            method=method,
            accuracy=accuracy,
            smearing=s,
            real_space_cutoff=7.4 * s,
            mesh_spacing=params.mesh_spacing,
            interpolation_nodes=params.interpolation_nodes,
        )
        row["mesh_abs_F0"] = rel_rms(mesh["forces"], ref["forces"]) * rms_ref / f0
    return row


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` (metadata + rows, one row a line) atomically: tmp file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ",\n  ".join(json.dumps(row) for row in payload["rows"])
    metadata = json.dumps(payload["metadata"], indent=1)
    text = f'{{"metadata": {metadata},\n "rows": [\n  {rows}\n]}}\n'
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 cells of N <= 512, PME, < 1 min")
    parser.add_argument("--cells", nargs="+", default=None, choices=sorted(CELLS))
    parser.add_argument("--methods", nargs="+", default=None, choices=["pme", "p3m", "ewald"])
    parser.add_argument("--accuracies", nargs="+", type=float, default=None)
    parser.add_argument("--sigmas", nargs="+", type=float, default=None)
    parser.add_argument("--decompose", action="store_true")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.quick:
        cells = args.cells or QUICK_CELLS
        methods = args.methods or ["pme"]
        accuracies = args.accuracies or [1e-3, 1e-4]
        sigmas = args.sigmas if args.sigmas is not None else [0.0]
    else:
        cells = args.cells or list(CELLS)
        methods = args.methods or ["pme", "p3m"]
        accuracies = args.accuracies or [1e-3, 1e-4, 1e-5]
        sigmas = args.sigmas if args.sigmas is not None else [0.0, 1.0]
    default_name = "pme_accuracy_quick.json" if args.quick else "pme_accuracy.json"
    output = args.output or HERE / "results" / default_name

    rows = []
    start = time.perf_counter()
    header = (
        f"| {'cell':<20} | sq | meth | target | measured | ratio | stress | potent | "
        f"s (Å) | r_c (Å) | h (Å) | mesh | p |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name in cells:
        build, _ = CELLS[name]
        atoms, q = build()
        f0, d = force_scale(atoms, q)
        for sigma_q in sigmas:
            t0 = time.perf_counter()
            ref = reference(atoms, q, sigma_q, use_cache=not args.no_cache)
            ref_seconds = time.perf_counter() - t0
            rms_f = float(np.sqrt((ref["forces"] ** 2).sum(axis=-1).mean()))
            for method in methods:
                if method == "ewald" and len(atoms) > 1000:
                    continue
                for accuracy in accuracies:
                    row = run_one(atoms, q, sigma_q, method, accuracy, ref, args.decompose)
                    row.update(
                        cell=name,
                        n_atoms=len(atoms),
                        sigma_q=sigma_q,
                        d=d,
                        F0=f0,
                        rms_force_over_F0=rms_f / f0,
                        reference_seconds=ref_seconds,
                    )
                    rows.append(row)
                    mesh = "x".join(map(str, row["mesh_shape"])) if row["mesh_shape"] else "-"
                    h = f"{row['mesh_spacing']:.3f}" if row["mesh_spacing"] else "-"
                    flag = " **" if row["ratio"] > 1 else ""
                    print(
                        f"| {name:<20} | {sigma_q:g} | {method:<4} | {accuracy:.0e} | "
                        f"{row['measured']:.2e} | {row['ratio']:.2f}{flag} | "
                        f"{row['stress_error'] / accuracy:.2f} | "
                        f"{row['potential_error'] / accuracy:.2f} | {row['smearing']:.3f} | "
                        f"{row['real_space_cutoff']:.2f} | {h} | {mesh} | "
                        f"{row['nodes'] or '-'} |"
                        + (
                            f" real {row['real_abs_F0']:.2e} mesh {row['mesh_abs_F0']:.2e}"
                            f" F/F0 {rms_f / f0:.3f}"
                            if args.decompose and "mesh_abs_F0" in row
                            else ""
                        ),
                        flush=True,
                    )
    elapsed = time.perf_counter() - start
    ratios = [r["ratio"] for r in rows]
    print(
        f"\n{len(rows)} runs in {elapsed:.0f} s; measured/requested: min {min(ratios):.2f}, "
        f"max {max(ratios):.2f}; stress/requested max "
        f"{max(r['stress_error'] / r['requested'] for r in rows):.2f}; potential/requested max "
        f"{max(r['potential_error'] / r['requested'] for r in rows):.2f}"
    )
    print("(stress, potent: errors relative to the largest component, divided by the target)")
    payload = {
        "metadata": {
            "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "python": platform.python_version(),
            "threads": args.threads,
            "seconds": elapsed,
            "reference": "hybridpot.testing.ewald_sum (NumPy, float64)",
        },
        "rows": rows,
    }
    write_json(output, payload)
    print(f"wrote {output}")
    return 1 if max(ratios) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
