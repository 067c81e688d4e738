"""Train a hybrid potential on an extended XYZ file from a YAML config, then evaluate it.

1. Writes reference data as extended XYZ: NaCl crystals (strained, 300-1000 K), vacancy
   pairs and the melt, sampled by molecular dynamics and labelled with energy, forces,
   stress and the true ±1 charges by the Tosi-Fumi model (:mod:`hybridpot.reference`).
   ``nacl_train.xyz`` and ``nacl_valid.xyz`` for training, ``nacl_test.xyz`` held out.
2. Loads ``examples/train_nacl.yaml`` (a commented config to copy) with
   :func:`hybridpot.train.load_config`, pointing its paths at these files with
   ``key=value`` overrides, and trains (:func:`hybridpot.train.train`).
3. Evaluates the trained model on the held-out file (:func:`hybridpot.train.evaluate_structures`),
   prints the error table and writes the predictions as extended XYZ.

    python examples/train_from_yaml.py                 # ~100 structures, 20 epochs
    python examples/train_from_yaml.py --quick         # 16 structures, 8 epochs (~15 s)
    python examples/train_from_yaml.py --config my.yaml --output runs/example

The same from the command line (run in the output folder, where the data are):

    hybridpot train train_nacl.yaml data.train=nacl_train.xyz data.valid=nacl_valid.xyz \\
        output_dir=run
    hybridpot evaluate run/model.pt nacl_test.xyz -o predictions.xyz
    hybridpot info run/model.pt

Writes ``OUTPUT/train_from_yaml/``: the three data files, ``run/`` (the trainer's
``model.pt``, effective ``config.yaml``, ``log.csv``, ``metrics.json``, checkpoint and, in
full mode, plots), ``predictions.xyz`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import ase.io
import numpy as np
from _common import add_common_arguments

import hybridpot
from hybridpot.reference import DemoPreset, MDSettings, generate_nacl_dataset, write_extxyz
from hybridpot.train import (
    evaluate_structures,
    format_table,
    load_config,
    train,
    write_predictions,
)

CONFIG = Path(__file__).resolve().parent / "train_nacl.yaml"
#: Structures in the train, validation and test files, and overrides of the quick mode.
SIZES = {"quick": (16, 4, 6), "full": (96, 16, 24)}
QUICK_OVERRIDES = ["epochs=8", "batch_size=2", "optim.lr=0.03", "plots=false"]


def write_data(folder: Path, quick: bool) -> dict[str, Path]:
    """Sample and write nacl_{train,valid,test}.xyz (independent seeds per file)."""
    n_train, n_valid, n_test = SIZES["quick" if quick else "full"]
    # The demo's bulk families: strained crystals, vacancy pairs and the melt, 64 ions.
    specs = DemoPreset().bulk_specs
    # Quick: short runs, frames 10 fs apart; full: the generator's decorrelated sampling.
    md = MDSettings(equilibration_steps=10, stride=5, frames_per_run=4) if quick else MDSettings()
    paths = {}
    for seed, (name, count) in enumerate(
        (("train", n_train), ("valid", n_valid), ("test", n_test)), start=1
    ):
        frames = generate_nacl_dataset(count, seed, specs=specs, md=md)
        paths[name] = write_extxyz(frames, folder / f"nacl_{name}.xyz")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, model=False)
    parser.add_argument(
        "--config", default=str(CONFIG), help="training config (default: train_nacl.yaml)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra key=value overrides, e.g. epochs=5 optim.lr=1e-3"
    )
    args = parser.parse_args()
    out = Path(args.output) / "train_from_yaml"
    out.mkdir(parents=True, exist_ok=True)

    print(f"[1/3] writing Tosi-Fumi NaCl reference data to {out} ...")
    files = write_data(out, args.quick)
    for path in files.values():
        print(f"  {path}: {len(ase.io.read(path, ':'))} structures")

    run = out / "run"
    overrides = [
        f"data.train={files['train']}",
        f"data.valid={files['valid']}",
        f"output_dir={run}",
        "quiet=true",
        *(QUICK_OVERRIDES if args.quick else []),
        *args.overrides,
    ]
    print(f"[2/3] training from {args.config} with overrides:")
    print("  " + shlex.join(overrides))
    shown = [o for o in overrides if o != "quiet=true"]  # the CLI prints per-epoch lines
    cli = ["hybridpot", "train", args.config, *shown, "--overwrite"]
    print(f"  (the same: {shlex.join(cli)})")
    config = load_config(args.config, overrides)
    result = train(config, overwrite=True)
    history = result.history
    print(
        f"  {len(history)} epochs, best epoch {result.best_epoch}; training loss "
        f"{history[0]['train_loss']:.4g} -> {history[-1]['train_loss']:.4g}; "
        f"model: {run / 'model.pt'}"
    )

    print(f"[3/3] evaluating on the held-out {files['test']} ...")
    cli = ["hybridpot", "evaluate", str(run / "model.pt"), str(files["test"])]
    print(f"  (the same: {shlex.join([*cli, '-o', str(out / 'predictions.xyz')])})")
    model = hybridpot.load_model(run / "model.pt")
    images = ase.io.read(files["test"], ":")
    metrics, counts, predictions = evaluate_structures(model, images, source=str(files["test"]))
    write_predictions(images, predictions, out / "predictions.xyz")
    print(f"{len(images)} structures from {files['test']}")
    print(format_table(metrics, counts))
    learned = np.concatenate([p["charges"] for p in predictions])
    numbers = np.concatenate([a.numbers for a in images])
    charge_means = {s: float(learned[numbers == z].mean()) for s, z in (("Na", 11), ("Cl", 17))}
    print(
        f"learned charges (mean over the test set): Na {charge_means['Na']:+.3f} e, "
        f"Cl {charge_means['Cl']:+.3f} e (reference +1, -1)"
    )
    print(f"predictions written to {out / 'predictions.xyz'}")

    summary = {
        "config": str(args.config),
        "overrides": overrides,
        "epochs_run": len(history),
        "best_epoch": result.best_epoch,
        "train_loss_first": history[0]["train_loss"],
        "train_loss_last": history[-1]["train_loss"],
        "validation_metrics": result.metrics,
        "test_metrics": metrics,
        "test_counts": counts,
        "test_structures": len(images),
        "learned_charge_means": charge_means,
        "files": {name: str(path) for name, path in files.items()},
        "model": str(run / "model.pt"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
