"""Qeq against latent charges at equal budget on the charged dimers (LODE type 0, CC).

Same network, data, loss, epochs and seed as ``benchmarks/real_data.py``'s dimer runs
(train on the 10 short-distance frames, test on the 3 long-distance ones), once with
``charge_model: latent`` and once with ``charge_model: qeq`` (sigma_q = 1 Å, the
default). ``--epochs`` sets the (equal) budget. ``--fragments`` adds the monomers as
charge groups (``chargeA``/``chargeB`` at the split ``indexB``): no charge flows between
the two molecules. Results (test errors, training time):
``benchmarks/results/qeq_training.json`` (``qeq_training_fragments.json``), written
after every run.

    OMP_NUM_THREADS=1 python benchmarks/qeq_training.py --epochs 100 [--fragments]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import real_data  # noqa: E402

from hybridpot.fileio import atomic_write_text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=real_data.DEFAULT_DATA)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "qeq_training.json")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--fragments", action="store_true", help="monomers as charge groups")
    args = parser.parse_args()
    folder = args.data_dir / "charged-dimers"
    if not folder.is_dir():
        print(f"no data in {folder}; nothing to do")
        return
    workdir = Path(tempfile.mkdtemp(prefix="hybridpot-qeq-training-"))
    runs = real_data.dimer_runs(folder, workdir, quick=False)
    key, _, model, training, files, keys = next(r for r in runs if r[1] == "hybrid")
    training = {**real_data.TRAINING, **training, "epochs": args.epochs, "dtype": args.dtype}
    if args.fragments:
        # Put the monomer charges and the split back (the prepared files keep only the
        # total charge); same frames, same order.
        for split in ("train", "test"):
            raw = real_data.read(folder / f"{split}-id0.xyz")
            prepared = real_data.read(files[split])
            for atoms, source in zip(prepared, raw, strict=True):
                for name in ("chargeA", "chargeB", "indexB"):
                    atoms.info[name] = source.info[name]
            real_data.write(prepared, files[split])
        files = {**files, "valid": files["train"]}
        keys = {
            **keys,
            "fragment_charges_key": ["chargeA", "chargeB"],
            "fragment_split_key": "indexB",
        }
    rows = {}
    for charge_model in ("latent", "qeq"):
        config = {**real_data.NETWORK, **model, "charge_model": charge_model}
        row = real_data.fit_and_test(
            f"{key}-{charge_model}{'-fragments' if args.fragments else ''}",
            config,
            training,
            files,
            keys,
            workdir,
        )
        rows[charge_model] = row
        test = row["test"]
        print(charge_model, f"{row['train_seconds']:.0f} s", json.dumps(test), flush=True)
        atomic_write_text(
            args.output,
            json.dumps(
                {
                    "dataset": key,
                    "epochs": args.epochs,
                    "dtype": args.dtype,
                    "machine": "shared 2-core machine, 1 thread, noisy",
                    "runs": rows,
                },
                indent=2,
            )
            + "\n",
        )


if __name__ == "__main__":
    main()
