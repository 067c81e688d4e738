"""Fine-tune a pre-trained model on a second data set, against training from scratch.

1. Generates two Tosi-Fumi NaCl data sets (:mod:`hybridpot.reference`): A, crystals at
   300-700 K; B, hotter and more strained crystals at 800-1100 K (few structures), and a
   test set like B.
2. Pre-trains a model on A.
3. Trains on B for the same number of epochs twice: from scratch, and starting from the
   pre-trained model (``init_from``). Prints the test errors of both on B.

    python examples/fine_tune.py [--quick] [--output DIR]

The fine-tuning run is the config key ``init_from: OUTPUT/fine_tune/pretrain/model.pt``;
``freeze: [...]`` would keep parts fixed (docs/large-datasets.md).
Writes ``OUTPUT/fine_tune/``: ``a.xyz``, ``b.xyz``, ``b_test.xyz`` and the training
folders ``pretrain/``, ``scratch/``, ``tuned/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ase.io
from _common import add_common_arguments

from hybridpot.reference import MDSettings, SamplingSpec, generate_nacl_dataset
from hybridpot.train import load_config, train

MODEL = [
    "model.cutoff=3.5",
    "model.num_layers=2",
    "model.hidden_irreps='8x0e + 8x1o'",
    "model.l_max=1",
    "model.num_radial=4",
    "model.radial_mlp=[8]",
]
COMMON = ["quiet=true", "plots=false", "batch_size=4", "optim.lr=0.01", "loss.energy=100"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, model=False)
    args = parser.parse_args()
    out = Path(args.output) / "fine_tune"
    out.mkdir(parents=True, exist_ok=True)
    sizes, pretrain_epochs, budget = ((8, 4, 4), 4, 3) if args.quick else ((32, 8, 16), 15, 12)

    md = MDSettings(equilibration_steps=10, stride=5, frames_per_run=8)
    cool = [SamplingSpec("crystal", "crystal", 1, (300.0, 700.0), 0.02, 0.02)]
    hot = [SamplingSpec("hot", "crystal", 1, (800.0, 1100.0), 0.04, 0.03)]
    for name, count, specs, seed in (
        ("a", sizes[0], cool, 1),
        ("b", sizes[1], hot, 2),
        ("b_test", sizes[2], hot, 3),
    ):
        ase.io.write(out / f"{name}.xyz", generate_nacl_dataset(count, seed, specs=specs, md=md))
    print(f"[1/3] data: A {sizes[0]} cool crystals, B {sizes[1]} hot ones, B test {sizes[2]}")

    def run(name: str, data: str, epochs: int, *extra: str):
        config = load_config(
            None,
            [
                f"data.train={out / data}",
                f"data.test={out / 'b_test.xyz'}",
                f"output_dir={out / name}",
                f"epochs={epochs}",
                *COMMON,
                *(MODEL if not extra else []),
                *extra,
            ],
        )
        return train(config, overwrite=True)

    run("pretrain", "a.xyz", pretrain_epochs)
    print(f"[2/3] pre-trained on A for {pretrain_epochs} epochs: {out / 'pretrain' / 'model.pt'}")
    scratch = run("scratch", "b.xyz", budget, *MODEL)
    tuned = run("tuned", "b.xyz", budget, f"init_from={out / 'pretrain' / 'model.pt'}")
    print(f"[3/3] {budget} epochs on B; test errors on B:")
    print(f"{'':12} {'energy RMSE meV/atom':>22} {'forces RMSE meV/Å':>20}")
    results = {}
    for name, result in (("scratch", scratch), ("fine-tuned", tuned)):
        m = result.test_metrics
        results[name] = m
        print(f"{name:12} {m['energy_rmse']:>22.2f} {m['forces_rmse']:>20.1f}")
    (out / "summary.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
