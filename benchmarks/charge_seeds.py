"""Do two training seeds agree on the latent charges? (issue 11: sign and 0.05 e per element)

Trains the default hybrid (latent charges, energy + forces only: nothing labels the
charges) with several seeds on the same data and compares the mean charge of each element
across seeds: the sign convention (:mod:`hybridpot.model.charge_sign`) must make the signs
agree, and the goal is agreement within 0.05 e per element.

Data: ``dimer3`` is charged-dimers type 3 (polar + apolar, both neutral: the sign is
free) with the real_data.py protocol (10 frames, monomers as fragments, interaction
energy); ``nacl`` is NaCl(aq) with the real_data.py learning-curve protocol (the first
``--frames`` frames of its training pool, its validation and test sets: charges that the
long-range interactions of ions and water determine); ``spice`` is the first
``--frames`` molecules of real_data.py's SPICE training split (neutral molecules).
Per-element means are taken over the test/validation structures.

    python benchmarks/charge_seeds.py --data dimer3 --seeds 0 1 --max-time 240 \
        [--threads 1] [--output benchmarks/results/charge_seeds_dimer3.json]

``--saved NAME=PATH NAME=PATH ...`` compares models already trained (e.g. by
``real_data.py --seed 0`` and ``--seed 1`` on the same data) instead of training: the
per-element means are taken over the same test structures of ``--data``.

Prints a table (element, mean charge per seed, largest difference) and writes JSON
atomically. ``signs_agree``: no element has means of both signs among those farther than
1 me from zero (a mean within 1 me of zero has no sign).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _real_data():
    spec = importlib.util.spec_from_file_location("real_data", HERE / "real_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(data: str, frames: int, workdir: Path, data_dir: Path):
    """(files {train, valid, test}, data keys, model overrides, batch size) for ``data``."""
    rd = _real_data()
    if data == "dimer3":
        runs = rd.dimer_runs(data_dir / "charged-dimers", workdir, False, ["hybrid"])
        for key, _, model, training, files, keys in runs:
            if "type-3" in key:
                return files, keys, model, training["batch_size"]
        raise RuntimeError("charged-dimers type 3 not found")
    if data == "nacl":
        rd.WATER_SIZES = [str(frames)]
        for _, _, model, training, files, keys in rd.water_runs(
            data_dir / "nacl-water", workdir, False, ["hybrid"]
        ):
            return files, keys, model, training["batch_size"]
    # SPICE: real_data.py's split (validation held out of the training file), training on
    # the first ``frames`` molecules of its training part; energy and forces only.
    for _, _, model, training, files, _ in rd.spice_runs(
        data_dir / "spice-dipeptides", workdir, False, ["hybrid"]
    ):
        train = rd.read(files["train"])[:frames]
        files = {**files, "train": rd.write(train, workdir / "spice-train.xyz")}
        return files, {"forces_key": "force"}, model, training["batch_size"]


def element_means(model, images, data_keys: dict) -> dict[str, float]:
    """Mean predicted charge (e) of each element over ``images``."""
    from hybridpot.train import DataConfig, evaluate_structures

    _, _, predictions = evaluate_structures(model, images, DataConfig(**data_keys))
    values: dict[str, list[float]] = {}
    for atoms, prediction in zip(images, predictions, strict=True):
        for symbol, charge in zip(atoms.get_chemical_symbols(), prediction["charges"]):
            values.setdefault(symbol, []).append(float(charge))
    return {s: float(np.mean(v)) for s, v in sorted(values.items())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("dimer3", "nacl", "spice"), default="dimer3")
    parser.add_argument(
        "--frames", type=int, default=100, help="SPICE molecules / NaCl(aq) frames to train on"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1")
    parser.add_argument("--max-time", type=float, default=240.0, help="seconds per run")
    parser.add_argument("--max-epochs", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hybridpot-charge-seeds"))
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument(
        "--saved", nargs="+", default=None, help="NAME=PATH of trained models to compare"
    )
    args = parser.parse_args(argv)
    saved = None
    if args.saved is not None:
        if args.seeds is not None:
            parser.error("--seeds trains new models, --saved compares trained ones: give one")
        try:
            saved = _real_data().named_paths(args.saved, "--saved", minimum=2)
        except ValueError as error:
            parser.error(str(error))
    args.seeds = [0, 1] if args.seeds is None else args.seeds
    if len(args.seeds) < 2:
        parser.error("--seeds needs at least two seeds to compare")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be different seeds, got {args.seeds}")
    if args.frames < 1:
        parser.error(f"--frames must be a positive number of structures, got {args.frames}")
    output = args.output or HERE / "results" / f"charge_seeds_{args.data}.json"

    import torch

    from hybridpot.fileio import atomic_write_text
    from hybridpot.train import config_from_dict, train

    torch.set_num_threads(args.threads)
    rd = _real_data()
    files, data_keys, overrides, batch_size = prepare(
        args.data, args.frames, args.workdir, args.data_dir
    )
    test_images = rd.read(files["test"])
    runs = {}
    if saved is not None:
        from hybridpot import load_model

        for name, path in saved.items():
            runs[name] = {
                "path": str(path),
                "mean_charges": element_means(load_model(path), test_images, data_keys),
            }
            print(f"{name}: {runs[name]['mean_charges']}", flush=True)
    for seed in [] if saved is not None else args.seeds:
        config = config_from_dict(
            {
                **rd.TRAINING,
                "seed": seed,
                "batch_size": batch_size,
                "epochs": args.max_epochs,
                "max_time": args.max_time,
                "early_stopping_patience": 60,
                "schedule": {**rd.TRAINING["schedule"], "patience": 20},
                "data": {**data_keys, "train": str(files["train"]), "valid": str(files["valid"])},
                "model": {**rd.NETWORK, **overrides},
                "output_dir": str(args.workdir / f"seed-{seed}"),
            }
        )
        start = time.perf_counter()
        result = train(config, overwrite=True)
        runs[str(seed)] = {
            "seconds": time.perf_counter() - start,
            "epochs_run": len(result.history),
            "stop_reason": result.stop_reason,
            "mean_charges": element_means(result.model, test_images, data_keys),
        }
        print(f"seed {seed}: {runs[str(seed)]['mean_charges']}", flush=True)
    labels = list(runs)
    elements = sorted(set.intersection(*(set(r["mean_charges"]) for r in runs.values())))
    table = {
        s: {
            "means": [runs[label]["mean_charges"][s] for label in labels],
            "spread": float(np.ptp([runs[label]["mean_charges"][s] for label in labels])),
        }
        for s in elements
    }
    signs_agree = all(
        len({np.sign(m) for m in row["means"] if abs(m) > 1e-3}) <= 1 for row in table.values()
    )
    report = {
        "command": "python benchmarks/charge_seeds.py " + " ".join(sys.argv[1:]),
        "data": args.data,
        "seeds": args.seeds if saved is None else labels,
        "runs": runs,
        "elements": table,
        "signs_agree": signs_agree,
        "largest_spread_e": max(row["spread"] for row in table.values()),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, json.dumps(report, indent=1) + "\n")
    names = [f"seed {s}" for s in labels] if saved is None else labels
    print("| element | " + " | ".join(f"{n} (e)" for n in names) + " | spread (e) |")
    print("|---|" + "---:|" * (len(labels) + 1))
    for symbol, row in table.items():
        means = " | ".join(f"{m:+.3f}" for m in row["means"])
        print(f"| {symbol} | {means} | {row['spread']:.3f} |")
    print(f"signs agree: {signs_agree}; largest spread {report['largest_spread_e']:.3f} e")
    print(f"written to {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
