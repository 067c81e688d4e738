"""What the long-distance test frames of a charged dimer measure: E(R) = c - A/R^4;
where a model's interaction energy comes from.

The LODE charged-dimer sets (``../shared/data/charged-dimers``) train on monomer
separations of 4-12 Å and test at 12-15 Å. For a cation and a neutral monomer (type 2)
the interaction energy beyond the cutoff is fitted by two terms: induction of the neutral
monomer by the ion's charge, -alpha e^2 / (2 R^4), and a constant c (an offset between the
dimer and its separately computed monomers that does not depend on R). The fitted A gives
the polarisability alpha = 2 A / k_e (Å^3; k_e = hybridpot.keys.COULOMB_CONSTANT, eV Å / e^2).

This script fits that form by least squares:

* to the DFT interaction energies of the training frames at distances >= each
  ``--min-distance``, and predicts the test frames with it (RMSE in meV);
* with ``--models NAME=PATH ...``: to each saved hybridpot model's predicted energies on
  all frames (training and test) at distances >= ``--model-min-distance`` (default 8.5 Å,
  where the short-range twin's prediction is flat), and to the DFT energies of the same
  frames, so a model's long-range behaviour reads as its own c and alpha. The models must
  have been trained on the interaction energy (``benchmarks/real_data.py``'s protocol);
  they are evaluated with the monomers as fragments (its ``DIMER_KEYS``: ``indexB``,
  ``chargeA``, ``chargeB``). Per frame it also splits each model's prediction into the
  network's energy and the Coulomb energy, and the Coulomb energy into each monomer's own
  part (its charges alone) and the part between the monomers: on a neutral pair this
  shows whether the charges model the interaction or an intramolecular energy that the
  network must cancel.

    python benchmarks/dimer_tail.py [--type 2] [--min-distance 6 7]
        [--models hybrid=/path/model.pt ...] [--model-min-distance 8.5]
        [--data-dir ../shared/data] [--output benchmarks/results/dimer_tail_type2.json]

Prints a table and writes JSON atomically.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
from pathlib import Path

import numpy as np

from hybridpot.keys import COULOMB_CONSTANT

HERE = Path(__file__).resolve().parent
#: benchmarks/real_data.py as a module (not run as a script): NAME=PATH lists, dimer keys.
REAL_DATA = runpy.run_path(str(HERE / "real_data.py"))


def fit_tail(distance: np.ndarray, energy: np.ndarray) -> dict:
    """Least-squares fit of ``energy = c - A / distance**4``.

    Args:
        distance: (n,) monomer separations, Å; n >= 3.
        energy: (n,) interaction energies, meV.

    Returns:
        ``c`` (meV), ``A`` (meV Å^4), ``alpha`` (Å^3, the polarisability whose induction
        energy is A/R^4 for a unit charge) and ``max_residual`` (meV).

    Raises:
        ValueError: fewer than 3 points, or shapes that differ.
    """
    distance = np.asarray(distance, dtype=float)
    energy = np.asarray(energy, dtype=float)
    if distance.shape != energy.shape or distance.ndim != 1:
        raise ValueError(
            f"distance and energy must be 1-D of one length, got {distance.shape} and "
            f"{energy.shape}"
        )
    if len(distance) < 3:
        raise ValueError(f"need at least 3 frames to fit c and A, got {len(distance)}")
    design = np.stack([np.ones_like(distance), -(distance**-4)], axis=1)
    (c, a), *_ = np.linalg.lstsq(design, energy, rcond=None)
    residual = design @ np.array([c, a]) - energy
    return {
        "c": float(c),
        "A": float(a),
        "alpha": float(2 * a / (1000 * COULOMB_CONSTANT)),
        "max_residual": float(np.abs(residual).max()),
    }


def predict_tail(fit: dict, distance: np.ndarray) -> np.ndarray:
    """``c - A / distance**4`` (meV) for a :func:`fit_tail` result; distance in Å."""
    return fit["c"] - fit["A"] * np.asarray(distance, dtype=float) ** -4


def read_frames(folder: Path, dimer_type: int) -> dict:
    """``{"train": [...], "test": [...]}`` frames of one dimer type, total charge set."""
    import ase.io

    frames = {}
    for split in ("train", "test"):
        path = folder / f"{split}-id{dimer_type}.xyz"
        if not path.is_file():
            raise FileNotFoundError(f"--type {dimer_type}: {path} does not exist")
        images = ase.io.read(path, ":")
        for atoms in images:
            atoms.info["charge"] = float(atoms.info["chargeA"] + atoms.info["chargeB"])
        frames[split] = images
    return frames


def split_coulomb_energy(atoms, charges, model) -> float:
    """The long-range energy (eV) a model assigns to fixed ``charges`` (N,) e: the Coulomb
    energy of its Gaussian charges minus, with ``coulomb_split="cutoff"``, the part of the
    pairs inside its cutoff (``hybridpot.electrostatics.screening``).

    Computed apart from the model (the ``coulomb`` function, float64 Ewald/PME at 1e-7, and
    ASE's neighbour list for the screened pairs), so it cross-checks the model's own
    ``energy_coulomb``. The energy is a quadratic form in the charges: with the charges of
    one monomer set to 0 it is the other monomer's own (intramolecular) part."""
    import torch
    from ase.neighborlist import neighbor_list

    from hybridpot.electrostatics.api import coulomb
    from hybridpot.electrostatics.screening import screening_pair_energy

    config = model.model_config
    energy = coulomb(atoms, charges, sigma_q=config.sigma_q, accuracy=1e-7)["energy"]
    if config.screened:
        i, j, r = neighbor_list("ijd", atoms, config.cutoff)
        kernel = screening_pair_energy(
            torch.from_numpy(r), config.cutoff, config.sigma_q, config.polynomial_degree
        ).numpy()
        # Each pair appears twice in the full neighbour list.
        energy -= 0.5 * COULOMB_CONSTANT * float(np.sum(charges[i] * charges[j] * kernel))
    return float(energy)


def model_energies(path: Path, images: list) -> tuple[np.ndarray, dict | None, dict]:
    """Energies (meV) a saved model predicts for ``images``, monomers as fragments; its
    learned per-element polarisabilities (Å³; None without ``induction``); and per frame
    the parts of the prediction (meV): ``network`` (short-range), ``coulomb``, ``other``
    (Qeq's on-site energy plus the induction energy; 0 for plain latent charges), and the
    Coulomb energy split into ``intra_a``, ``intra_b`` (each monomer's charges alone) and
    ``inter`` (the rest), plus ``coulomb_check``, the same Coulomb energy recomputed apart
    from the model by :func:`split_coulomb_energy` (absent without a Coulomb term)."""
    import hybridpot

    model = hybridpot.load_model(path)
    polarizabilities = None
    if model.model_config.induction:
        values = model.polarizabilities().tolist()
        polarizabilities = dict(zip(model.model_config.elements, values))
    calculator = hybridpot.HybridCalculator(model=model, **REAL_DATA["DIMER_KEYS"])
    energies = []
    parts = {key: [] for key in ("network", "coulomb", "other", "intra_a", "intra_b", "inter")}
    if model.model_config.coulomb:
        parts["coulomb_check"] = []
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = calculator
        energies.append(1000 * atoms.get_potential_energy())
        parts["network"].append(1000 * calculator.results["energy_short"])
        parts["coulomb"].append(1000 * calculator.results["energy_coulomb"])
        # Qeq's on-site energy and the induction energy (0 for a latent-charge model).
        other = calculator.results["energy_qeq"] + calculator.results["energy_induction"]
        parts["other"].append(1000 * other)
        if not model.model_config.coulomb:
            for key in ("intra_a", "intra_b", "inter"):
                parts[key].append(0.0)
            continue
        charges = np.asarray(calculator.results["charges"], dtype=np.float64)
        in_a = np.arange(len(atoms)) < int(atoms.info["indexB"])
        total = split_coulomb_energy(atoms, charges, model)
        intra_a = split_coulomb_energy(atoms, np.where(in_a, charges, 0.0), model)
        intra_b = split_coulomb_energy(atoms, np.where(in_a, 0.0, charges), model)
        parts["coulomb_check"].append(1000 * total)
        parts["intra_a"].append(1000 * intra_a)
        parts["intra_b"].append(1000 * intra_b)
        parts["inter"].append(1000 * (total - intra_a - intra_b))
    return np.array(energies), polarizabilities, parts


def print_parts(name: str, distance, dft, predicted, parts: dict) -> None:
    """Per frame: where a model's interaction energy comes from (meV)."""
    print(
        f"\n{name}, per frame (meV): error = model - DFT; model = network + Coulomb + other "
        "(Qeq on-site, induction); Coulomb = intra A + intra B + inter"
    )
    print("| R (Å) | DFT | model | error | network | Coulomb | other | intra A | intra B | inter |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    columns = ("network", "coulomb", "other", "intra_a", "intra_b", "inter")
    for k, r in enumerate(distance):
        values = [dft[k], predicted[k], predicted[k] - dft[k]]
        values += [parts[key][k] for key in columns]
        print(f"| {r:.2f} | " + " | ".join(f"{v:+.3f}" for v in values) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--type", type=int, default=2, help="dimer type (file id)")
    parser.add_argument("--min-distance", type=float, nargs="+", default=[6.0, 7.0])
    parser.add_argument("--models", nargs="+", default=[], help="NAME=PATH of saved models")
    parser.add_argument("--model-min-distance", type=float, default=8.5)
    parser.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    for value in args.min_distance:
        if not value > 0:
            parser.error(f"--min-distance must be > 0 Å, got {value}")
    if not args.model_min_distance > 0:
        parser.error(f"--model-min-distance must be > 0 Å, got {args.model_min_distance}")
    try:
        models = REAL_DATA["named_paths"](args.models, "--models") if args.models else {}
        frames = read_frames(args.data_dir / "charged-dimers", args.type)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    output = args.output or HERE / "results" / f"dimer_tail_type{args.type}.json"

    def column(images, key):
        return np.array([float(a.info[key]) for a in images])

    train, test = frames["train"], frames["test"]
    r_train, r_test = column(train, "distance"), column(test, "distance")
    e_train, e_test = 1000 * column(train, "inter_energy"), 1000 * column(test, "inter_energy")
    dft = {}
    print("| fit to DFT frames | c (meV) | A (eV Å⁴) | α (Å³) | max residual (meV) | test RMSE (meV) |")  # fmt: skip  # noqa: E501
    print("|---|---:|---:|---:|---:|---:|")
    for r_min in args.min_distance:
        keep = r_train >= r_min
        if keep.sum() < 3:
            parser.error(f"--min-distance {r_min}: only {keep.sum()} training frames beyond it")
        fit = fit_tail(r_train[keep], e_train[keep])
        predicted = predict_tail(fit, r_test)
        fit["test_predicted"] = predicted.tolist()
        fit["test_rmse"] = float(np.sqrt(np.mean((predicted - e_test) ** 2)))
        fit["frames"] = int(keep.sum())
        dft[str(r_min)] = fit
        print(
            f"| R >= {r_min:g} Å ({fit['frames']} frames) | {fit['c']:+.2f} | "
            f"{fit['A'] / 1000:.1f} | {fit['alpha']:.2f} | {fit['max_residual']:.2f} | "
            f"{fit['test_rmse']:.2f} |"
        )
    report = {
        "command": " ".join(
            ["python benchmarks/dimer_tail.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "type": args.type,
        "distance": [*r_train.tolist(), *r_test.tolist()],
        "dft_energy": [*e_train.tolist(), *e_test.tolist()],
        "dft_fits": dft,
        "models": {},
    }
    if models:
        r_all = np.concatenate([r_train, r_test])
        keep = r_all >= args.model_min_distance
        if keep.sum() < 3:
            parser.error(
                f"--model-min-distance {args.model_min_distance}: only {keep.sum()} frames "
                "beyond it"
            )
        report["model_min_distance"] = args.model_min_distance
        rows = {"DFT": np.concatenate([e_train, e_test])}
        learned, parts = {}, {}
        for name, path in models.items():
            rows[name], polarizabilities, parts[name] = model_energies(path, [*train, *test])
            if polarizabilities is not None:
                learned[name] = polarizabilities
                values = ", ".join(f"{s} {v:.3f}" for s, v in polarizabilities.items())
                print(f"{name}: learned polarisabilities (Å³) {values}")
        print(f"\n| all frames at R >= {args.model_min_distance:g} Å ({keep.sum()}) | c (meV) "
              "| α (Å³) | max residual (meV) |")  # fmt: skip
        print("|---|---:|---:|---:|")
        for name, energies in rows.items():
            fit = fit_tail(r_all[keep], energies[keep])
            if name != "DFT":
                report["models"][name] = {
                    "path": str(models[name]),
                    "energy": energies.tolist(),
                    "parts": parts[name],
                }
                if name in learned:
                    report["models"][name]["polarizabilities"] = learned[name]
            report["models"].setdefault(name, {}).update(fit)
            print(f"| {name} | {fit['c']:+.2f} | {fit['alpha']:.2f} | {fit['max_residual']:.2f} |")
        for name, part in parts.items():
            print_parts(name, r_all, rows["DFT"], rows[name], part)
    from hybridpot.fileio import atomic_write_text

    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, json.dumps(report, indent=1) + "\n")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
