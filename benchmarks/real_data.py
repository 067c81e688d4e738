"""Real-DFT benchmark: hybrid variants, their short-range and invariant twins, and MACE.

For each dataset in ``--data-dir`` (default ``../shared/data`` next to the repository; see
its README for sources, licences and published numbers), the same network is trained once
per *variant* (``--models``) with the same data, loss and stopping rule, and evaluated on
held-out structures. A variant is a set of model-config overrides on top of
:data:`NETWORK` (see :data:`VARIANTS`):

* ``short-range``: no Coulomb term (the twin every hybrid must beat);
* ``hybrid-gaussian``: Gaussian charges of width ``sigma_q`` = 1 Å, full Coulomb;
* ``hybrid-wide``: Gaussian width tied to the cutoff (``sigma_q`` = cutoff / 2.5);
* ``hybrid-screened``: the Coulomb energy of pairs inside the network cutoff smoothly
  removed (model-config key ``coulomb_split: "cutoff"``; needs a hybridpot that has it);
* ``hybrid``: the library defaults with the Coulomb term on (whatever default won; with
  ``induction: "auto"`` that is induction on for the charged dimer types 0 and 2, off for
  the rest);
* ``hybrid-no-induction``: ``hybrid`` with ``induction: false`` (latent charges alone, the
  ``hybrid`` of the runs before induction became ``"auto"``);
* ``hybrid-qeq``: charge equilibration (``charge_model: "qeq"``) instead of latent
  charges: the network predicts electronegativities and hardnesses, and the charges
  minimise the Qeq energy in each structure, so they respond to their surroundings
  (polarisation, which fixed latent charges lack);
* ``hybrid-induction``: ``hybrid`` plus first-order induction (model-config key
  ``induction: true``): learned per-element polarisabilities polarised by the field of
  the charges beyond the cutoff (the ion-induced-dipole tail that latent charges miss);
* ``invariant-hybrid``: ``hybrid`` with ``l_max`` 0 and scalar-only hidden irreps
  ``"Nx0e"``, N chosen (:func:`invariant_twin`) so that its parameter count is the
  closest to the equivariant ``hybrid`` for the dataset's elements (within ~5%): the
  data efficiency of equivariance measured at an equal parameter budget;
* ``mace`` / ``mace-les``: MACE trained by ``benchmarks/_mace_train.py`` in its own virtual
  environment (``--mace-python``) on the same files with the same stopping rule; without
  ``--mace-python``, or (``mace-les``) when the installed MACE has no latent-Ewald
  long-range option, the row says "skipped" with the reason.

Default ``--models``: short-range, hybrid, invariant-hybrid; ``--models all`` runs every
variant. Row keys are ``dataset/.../variant``.

Datasets:

* ``charged-dimers`` (types 0, 2, 3): train on the 10 short-distance frames of a type,
  test on its 3 long-distance frames (a distance extrapolation). The energy target is
  the interaction energy ``inter_energy`` = E - E_A - E_B (per-element reference energies
  fixed at 0), the forces are the total DFT forces (consistent with it: the monomers are
  rigid), the total charge is ``chargeA + chargeB`` and each monomer is a fragment with
  its own total charge (``indexB``, ``chargeA``, ``chargeB``: no charge moves between
  the monomers). The 10 training frames also select
  the exported weights and drive early stopping (there is nothing else to validate on).
* ``nacl-water`` (799 frames of NaCl(aq), revPBE0-D3): a seeded 90/10 split into a pool
  and a test set; a fixed validation set of 20 frames is taken from the pool and a
  learning curve trains every variant on nested subsets of 50, 200 and all remaining
  frames. Per-element reference energies by least squares on each training subset.
* ``spice-dipeptides``: train on the train file less a seeded 10 % held out for
  validation (early stopping, best epoch, offset refit), report on the validation file
  (the test set: nothing selects on it); every variant with energy + forces, plus
  ``hybrid-mbis`` (the ``hybrid`` variant with MBIS charges and dipoles as extra targets).

Training to convergence. No fixed epoch budget: each run trains until the validation
loss has not improved for ``--patience`` epochs (early stopping), with a plateau
learning-rate schedule (factor 0.5 after patience/3 stalled epochs; a cosine schedule
would need a known epoch count), a generous ``--max-epochs`` cap and an optional
wall-time budget ``--max-time`` seconds per run (training-config key ``max_time``; only
passed when given). ``--schedule cosine`` is the fixed-budget alternative for machines
that cannot train to convergence: the rate decays to the same floor over ``--max-epochs``
(every variant gets the same budget; not offered for MACE, which has no cosine schedule).
``--seed`` sets the training seed (initialisation and batch order; the data splits stay
fixed), e.g. to compare the latent charges of two seeds (``charge_seeds.py --saved``).
Per-dataset defaults (:data:`STOPPING`), chosen so that "no improvement for P epochs"
means roughly the same number of optimiser steps:

* charged dimers: patience 200 epochs, at most 5000 (10 frames, batch 2: 5 steps/epoch;
  patience 60 took the recovery from a loss spike for convergence);
* NaCl(aq): patience 20 epochs of the full pool (~160 steps/epoch, batch 4); a subset of
  n frames gets P * ceil(n_full / n) epochs (the same number of steps), at most 500
  full-pool epochs' worth of steps;
* SPICE: patience 20 epochs (445 training frames, batch 4), at most 1000.

``--patience`` / ``--max-epochs`` replace the per-dataset values (NaCl subsets still
scaled). Every run records ``epochs_run``, ``best_epoch`` and ``stop_reason``: "patience"
(reported as converged), "max_time" or "max_epochs" (not converged), and its per-epoch
validation history (learning curve). PNGs next to the JSON: per comparison, validation
energy and force RMSE against epoch, one line per variant (``<stem>_curves_<run>.png``);
and the NaCl(aq) test error against training-set size, log-log, one line per variant
(``<stem>_nacl_learning_curve.png``).

Every run's training time, parameter count and test errors (energy per atom and force
RMSE/MAE, energy per structure, charges and dipole where labelled) go into a Markdown
table and JSON (``--output``, written atomically after every run). A dataset whose folder
is absent is skipped with a message. ``--resume`` keeps runs already in the JSON whose
settings are unchanged, so an interrupted benchmark continues where it stopped.
``--extend`` continues each hybridpot run from the checkpoint its earlier invocation left
in ``--workdir`` (same data, model, seed and ``--patience``, which also sets the
schedule's; only ``--max-epochs`` and ``--max-time`` may grow): a run that stopped at its
epoch cap or time budget trains on, exactly as if it had never stopped, so a long CPU
comparison can be spread over several sessions. Its ``train_seconds`` is then the summed
epoch time of all parts. MACE runs always start afresh.
``--device auto`` (default) trains on CUDA when torch sees a GPU, else on the CPU.

    python benchmarks/real_data.py [--quick] [--datasets charged-dimers nacl-water
        spice-dipeptides] [--models short-range hybrid invariant-hybrid | all]
        [--patience P] [--max-epochs N] [--max-time SECONDS] [--schedule plateau|cosine]
        [--seed S] [--device auto|cpu|cuda]
        [--mace-python /work/mace-venv/bin/python] [--data-dir ../shared/data]
        [--threads 2] [--resume] [--extend] [--workdir /tmp/hybridpot-real-data]
        [--output benchmarks/results/real_data.json]

``--quick`` is a smoke run (tiny subsets, 1-3 epochs, a small network: seconds to a
minute per dataset); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"

#: The network every variant shares (MACE-like small size, 5 Å cutoff).
NETWORK = {
    "cutoff": 5.0,
    "num_layers": 2,
    "hidden_irreps": "32x0e + 16x1o + 8x2e",
    "l_max": 2,
    "num_radial": 8,
    "radial_mlp": [64, 64],
    "coulomb_accuracy": 1e-4,
}
QUICK_NETWORK = {**NETWORK, "hidden_irreps": "8x0e + 4x1o", "radial_mlp": [16]}

#: Named variants: model-config overrides on top of the network (passed straight into the
#: model config). ``invariant-hybrid`` gets its hidden irreps from :func:`invariant_twin`.
VARIANTS = {
    "short-range": {"coulomb": False},
    "hybrid-gaussian": {"coulomb": True, "sigma_q": 1.0, "coulomb_split": "none"},
    "hybrid-wide": {"coulomb": True, "sigma_q": NETWORK["cutoff"] / 2.5, "coulomb_split": "none"},
    "hybrid-screened": {"coulomb": True, "coulomb_split": "cutoff"},
    "hybrid": {"coulomb": True},
    "hybrid-no-induction": {"coulomb": True, "induction": False},
    "hybrid-qeq": {"coulomb": True, "charge_model": "qeq"},
    "hybrid-induction": {"coulomb": True, "induction": True},
    "invariant-hybrid": {"coulomb": True, "l_max": 0},
}
#: MACE variants (trained by benchmarks/_mace_train.py in its own environment).
MACE_VARIANTS = ("mace", "mace-les")
ALL_VARIANTS = (*VARIANTS, *MACE_VARIANTS)
DEFAULT_MODELS = ("short-range", "hybrid", "invariant-hybrid")

#: Training settings shared by every run (stopping rule and batch size set per dataset).
TRAINING = {
    "dtype": "float32",
    "seed": 0,
    "optim": {"lr": 5e-3, "ema_decay": 0.99},
    # Plateau schedule: a cosine one needs the epoch count, unknown with early stopping.
    "schedule": {"kind": "plateau", "factor": 0.5, "min_lr": 1e-5},
    # Energy per atom weighted 100 against forces 10: with weight 1 the interaction
    # energies of the dimers (a few meV per atom) were not fitted at all (type 0 hybrid:
    # 160 vs 0.9 meV per structure on the test frames) and the energy of SPICE stalled.
    "loss": {"energy": 100.0, "forces": 10.0},
    "plots": False,
    "quiet": True,
}

#: Per-dataset stopping rule: early-stopping patience and epoch cap (see the docstring).
STOPPING = {
    # 200, not 60: a hybrid's loss spike took more than 60 epochs to recover from, and
    # patience 60 stopped two still-improving runs right after one (docs/benchmarks.md).
    "charged-dimers": {"patience": 200, "max_epochs": 5000},
    "nacl-water": {"patience": 20, "max_epochs": 500},
    "spice-dipeptides": {"patience": 20, "max_epochs": 1000},
}
QUICK_STOPPING = {
    "charged-dimers": {"patience": 2, "max_epochs": 3},
    "nacl-water": {"patience": 1, "max_epochs": 1},
    "spice-dipeptides": {"patience": 1, "max_epochs": 1},
}

#: Published numbers quoted in ../shared/data/README.md (for the comparison table).
PUBLISHED = {
    "charged-dimers/type-0": "force RMSE: short-range 64.3 meV/Å, SOG-Net 3.8 meV/Å; "
    "CACE-LR 6.93 meV/Å and 5.77 meV per configuration",
    "spice-dipeptides": "CACE: short-range 3.0-3.3 meV/atom, 80-109 meV/Å; "
    "latent Ewald charges 2.4 meV/atom, 75-94 meV/Å",
}

#: Per-epoch history columns kept in the JSON (the learning curves; ``time_s``, the
#: epoch's seconds, lets ``compare_curves.py`` compare two runs at equal time).
HISTORY_KEYS = (
    "epoch",
    "lr",
    "train_loss",
    "val_loss",
    "val_energy_rmse",
    "val_forces_rmse",
    "time_s",
)


def read(path: Path) -> list:
    import ase.io

    return ase.io.read(path, ":")


def write(images: list, path: Path) -> Path:
    import ase.io

    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, images, format="extxyz")
    return path


def parameter_count(model: dict, elements: list[str]) -> int:
    """Trainable parameters of the hybridpot model built from ``model`` for ``elements``."""
    from hybridpot.model import build_model

    built = build_model({**model, "elements": list(elements)})
    return sum(p.numel() for p in built.parameters() if p.requires_grad)


def invariant_twin(model: dict, elements: list[str]) -> tuple[dict, int, int]:
    """The scalar-only twin of ``model``: ``l_max`` 0 and hidden irreps ``"Nx0e"``.

    N is the multiplicity whose parameter count is the closest to ``model``'s for
    ``elements``. The count of ``"Nx0e"`` is a quadratic in N (weights couple at most two
    channel multiplicities), so three counts give a first guess; a local search over
    neighbouring N (the count grows with N) then makes the choice exact. Every other
    setting (radial MLP, layers, cutoff, Coulomb) is unchanged.

    Returns:
        ``(twin config, twin parameters, reference parameters)``.
    """
    target = parameter_count(model, elements)
    counts: dict[int, int] = {}

    def count(n: int) -> int:
        if n not in counts:
            twin = {**model, "l_max": 0, "hidden_irreps": f"{n}x0e"}
            counts[n] = parameter_count(twin, elements)
        return counts[n]

    a, b, c = np.polyfit([8, 16, 32], [count(8), count(16), count(32)], 2)
    roots = [r.real for r in np.roots([a, b, c - target]) if abs(r.imag) < 1e-9 and r.real > 0]
    n = max(1, round(max(roots))) if roots else 1

    def miss(k: int) -> int:
        return abs(count(k) - target)

    while miss(n + 1) < miss(n):
        n += 1
    while n > 1 and miss(n - 1) < miss(n):
        n -= 1
    twin = {**model, "l_max": 0, "hidden_irreps": f"{n}x0e"}
    return twin, count(n), target


def named_paths(specs: list[str], flag: str, minimum: int = 1) -> dict[str, Path]:
    """``["name=path", ...]`` given to ``flag`` -> ``{name: path}`` (other scripts' lists of
    saved models).

    Raises:
        ValueError: fewer than ``minimum`` specs, a spec without ``=``, a repeated name or
            a missing file; the message names ``flag``.
    """
    if len(specs) < minimum:
        raise ValueError(f"{flag} needs at least {minimum} NAME=PATH, got {len(specs)}")
    paths: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not (sep and name and path):
            raise ValueError(f"{flag} takes NAME=PATH, got {spec!r}")
        if name in paths:
            raise ValueError(f"{flag}: the name {name!r} is given twice")
        if not Path(path).is_file():
            raise ValueError(f"{flag}: {name}={path}: no such model file")
        paths[name] = Path(path)
    return paths


def schedule(kind: str, patience: int) -> dict:
    """The learning-rate schedule of one run (epochs of patience after scaling).

    ``plateau``: :data:`TRAINING`'s, halving after ``patience // 3`` stalled epochs (at
    least 1). ``cosine``: a fixed budget, decaying from the initial rate to the same
    ``min_lr`` over the run's epoch cap (early stopping still applies).
    """
    if kind == "plateau":
        return {**TRAINING["schedule"], "patience": max(1, patience // 3)}
    if kind == "cosine":
        return {"kind": "cosine", "min_lr": TRAINING["schedule"]["min_lr"]}
    raise ValueError(f"schedule: expected 'plateau' or 'cosine', got {kind!r}")


#: The trainer's stop reasons (``TrainResult.stop_reason``) as this benchmark names them.
STOP_REASONS = {"patience": "patience", "max_time": "max_time", "epochs": "max_epochs"}


def stop_reason(trainer_reason: str) -> str:
    """The benchmark's name for the trainer's stop reason: "patience" (converged),
    "max_time" or "max_epochs"; anything else (a run that did not end) is an error."""
    if trainer_reason not in STOP_REASONS:
        raise RuntimeError(
            f"training ended with stop reason {trainer_reason!r}; expected one of "
            f"{sorted(STOP_REASONS)}"
        )
    return STOP_REASONS[trainer_reason]


def fit_and_test(
    key: str,
    model: dict,
    training: dict,
    files: dict,
    data_keys: dict,
    workdir: Path,
    extend: bool = False,
) -> dict:
    """Train one model (``files``: train, valid, test paths) and evaluate it on the test file.

    ``extend``: continue from the checkpoint of an earlier run in the same output folder
    (when there is one) instead of starting afresh.

    Returns the JSON row: training time (s), parameters, epochs run, best epoch, stop
    reason, the per-epoch validation history and test metrics in reporting units
    (meV/atom, meV/Å, me, me·Å), plus the energy RMSE/MAE per structure (meV).
    """
    from hybridpot.train import (
        DataConfig,
        config_from_dict,
        evaluate_structures,
        extract_labels,
        train,
    )

    output = workdir / "runs" / key.replace("/", "__")
    config = config_from_dict(
        {
            **training,
            "data": {**data_keys, "train": str(files["train"]), "valid": str(files["valid"])},
            "model": model,
            "output_dir": str(output),
        }
    )
    extended = extend and (output / "checkpoint.pt").is_file()
    start = time.perf_counter()
    result = train(config, resume=extended, overwrite=not extended)
    seconds = time.perf_counter() - start
    if extended:  # every part's epochs, as the time budget counts them
        seconds = sum(row["time_s"] for row in result.history)
    test_images = read(files["test"])
    metrics, counts, predictions = evaluate_structures(
        result.model, test_images, DataConfig(**data_keys), batch_size=training["batch_size"]
    )
    # Energy per structure (meV): what the dimer literature quotes.
    errors = []
    for atoms, prediction in zip(test_images, predictions, strict=True):
        labels, _ = extract_labels(atoms, DataConfig(**data_keys))
        errors.append(float(prediction["energy"]) - float(labels["energy"][0]))
    errors = 1000.0 * np.array(errors)
    metrics["energy_per_structure_rmse"] = float(np.sqrt(np.mean(errors**2)))
    metrics["energy_per_structure_mae"] = float(np.mean(np.abs(errors)))
    reason = stop_reason(result.stop_reason)
    return {
        "train_seconds": seconds,
        "extended": extended,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "stop_reason": reason,
        "converged": reason == "patience",
        "parameters": sum(p.numel() for p in result.model.parameters() if p.requires_grad),
        # As the trainer resolved it ("auto": on when the training data hold an ion).
        "induction": result.model.model_config.induction,
        "n_train": len(read(files["train"])),
        "n_valid": len(read(files["valid"])),
        "n_test": len(test_images),
        "counts": counts,
        "test": metrics,
        "history": [{k: row[k] for k in HISTORY_KEYS if k in row} for row in result.history],
    }


def mace_fit_and_test(
    key: str,
    variant: str,
    training: dict,
    files: dict,
    data_keys: dict,
    atomic_energies: dict | None,
    workdir: Path,
    mace_python: str,
    threads: int,
) -> dict:
    """Train MACE in its own environment (benchmarks/_mace_train.py) and return its row.

    Raises:
        RuntimeError: with the worker's error output when it fails.
    """
    command = [
        mace_python,
        str(HERE / "_mace_train.py"),
        "--train", str(files["train"]),
        "--valid", str(files["valid"]),
        "--test", str(files["test"]),
        "--workdir", str(workdir / "runs" / key.replace("/", "__")),
        "--forces-key", data_keys.get("forces_key", "forces"),
        "--batch-size", str(training["batch_size"]),
        "--max-epochs", str(training["epochs"]),
        "--patience", str(training["early_stopping_patience"]),
        "--lr", str(training["optim"]["lr"]),
        "--energy-weight", str(training["loss"]["energy"]),
        "--forces-weight", str(training["loss"]["forces"]),
        "--seed", str(training["seed"]),
        "--device", training["device"],
        "--threads", str(threads),
        "--cutoff", str(NETWORK["cutoff"]),
    ]  # fmt: skip
    if data_keys.get("total_charge_key"):
        command += ["--charge-key", data_keys["total_charge_key"]]
    if atomic_energies is not None:
        command += ["--atomic-energies", json.dumps(atomic_energies)]
    if training.get("max_time") is not None:
        command += ["--max-time", str(training["max_time"])]
    if variant == "mace-les":
        command.append("--les")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{key}: MACE worker failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["converged"] = row["stop_reason"] == "patience"
    row["n_valid"] = len(read(files["valid"]))  # as for hybridpot's rows
    return row


# --------------------------------------------------------------------------- datasets
# Each generator yields (key, variant, model overrides, training, files, data keys).


#: Fragment constraints of the dimer files (the LODE convention): atoms before ``indexB``
#: are monomer A with total charge ``chargeA``, the rest monomer B with ``chargeB``.
DIMER_KEYS = {"fragment_split_key": "indexB", "fragment_charges_key": ["chargeA", "chargeB"]}


def dimer_runs(folder: Path, workdir: Path, quick: bool, models: list[str]):
    """Charged dimers: per type, training frames -> long-distance test frames."""
    from ase.calculators.singlepoint import SinglePointCalculator

    types = (0,) if quick else tuple(DIMER_TYPES or (0, 2, 3))
    for k in types:
        prepared = {}
        for split in ("train", "test"):
            images = read(folder / f"{split}-id{k}.xyz")
            out = []
            for atoms in images:
                new = atoms.copy()
                new.info = {
                    "charge": float(atoms.info["chargeA"] + atoms.info["chargeB"]),
                    "distance": float(atoms.info["distance"]),
                    # The two monomers as fragments: each keeps its own total charge.
                    **{key: atoms.info[key] for key in ("chargeA", "chargeB", "indexB")},
                }
                # Interaction energy as the target; total forces (the monomers are rigid,
                # so these are consistent with it: see the module docstring).
                new.calc = SinglePointCalculator(
                    new, energy=float(atoms.info["inter_energy"]), forces=atoms.get_forces()
                )
                out.append(new)
            if quick and split == "train":
                out = out[::3]
            prepared[split] = write(out, workdir / "charged-dimers" / f"{split}-id{k}.xyz")
        elements = sorted({s for a in read(prepared["train"]) for s in a.get_chemical_symbols()})
        files = {"train": prepared["train"], "valid": prepared["train"], "test": prepared["test"]}
        training = {"batch_size": 2}
        model = {"atomic_energies": dict.fromkeys(elements, 0.0)}
        for name in models:
            yield f"charged-dimers/type-{k}/{name}", name, model, training, files, DIMER_KEYS


#: Charged-dimer types (``--dimer-types``); None: 0, 2 and 3.
DIMER_TYPES: list[int] | None = None

#: NaCl(aq) training-set sizes (``--sizes``); None: 50, 200 and the whole pool.
WATER_SIZES: list[str] | None = None


def water_runs(folder: Path, workdir: Path, quick: bool, models: list[str]):
    """NaCl(aq): seeded 90/10 split, fixed validation set, nested learning-curve subsets."""
    images = [a for f in sorted(folder.glob("*.extxyz")) for a in read(f)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    n_test = round(0.1 * len(images))
    test, pool = order[:n_test], order[n_test:]
    n_valid = 20
    valid, train_pool = pool[:n_valid], pool[n_valid:]
    sizes = [50, 200, len(train_pool)]
    if WATER_SIZES:  # --sizes: a part of the learning curve ("all": the whole pool)
        sizes = [
            len(train_pool) if n == "all" else min(int(n), len(train_pool)) for n in WATER_SIZES
        ]
    if quick:
        test, valid, sizes = test[:6], valid[:4], [8]
    base = workdir / "nacl-water"
    files = {
        "test": write([images[i] for i in test], base / "test.xyz"),
        "valid": write([images[i] for i in valid], base / "valid.xyz"),
    }
    for size in sizes:
        train_file = write([images[i] for i in train_pool[:size]], base / f"train-{size}.xyz")
        # Patience and epoch cap count epochs of the full pool: a subset gets as many more
        # epochs as it has fewer batches (the same number of optimiser steps).
        scale = 1 if quick else math.ceil(math.ceil(len(train_pool) / 4) / math.ceil(size / 4))
        training = {"batch_size": 4, "epoch_scale": scale}
        for name in models:
            yield (
                f"nacl-water/train-{size}/{name}",
                name,
                {},
                training,
                {**files, "train": train_file},
                {"total_charge_key": "total_charge"},
            )


def spice_runs(folder: Path, workdir: Path, quick: bool, models: list[str]):
    """SPICE dipeptides: train file (minus a seeded 10 % for validation) -> the validation
    file as test set; plus the hybrid with MBIS targets."""
    images = read(folder / "spice-dipep-dipolar_train.xyz")
    test_file = folder / "spice-dipep-dipolar_val.xyz"
    # Early stopping, the best-epoch choice and the offset refit select on the validation
    # molecules: they come out of the training file, never out of the reported test set.
    order = np.random.default_rng(0).permutation(len(images))
    n_valid = max(1, round(0.1 * len(images)))
    valid, train = order[:n_valid], order[n_valid:]
    if quick:
        valid, train = valid[:4], train[:12]
        test_file = write(read(test_file)[:6], workdir / "spice" / "test.xyz")
    files = {
        "train": write([images[i] for i in train], workdir / "spice" / "train.xyz"),
        "valid": write([images[i] for i in valid], workdir / "spice" / "valid.xyz"),
        "test": test_file,
    }
    keys = {"forces_key": "force", "charges_key": "mbi_charges", "dipole_key": "dipole"}
    training = {"batch_size": 4}
    for name in models:
        yield f"spice-dipeptides/{name}", name, {}, training, files, keys
    if "hybrid" in models:
        with_charges = {**training, "loss": {**TRAINING["loss"], "charges": 1.0, "dipole": 1.0}}
        yield "spice-dipeptides/hybrid-mbis", "hybrid", {}, with_charges, files, keys


DATASETS = {
    "charged-dimers": dimer_runs,
    "nacl-water": water_runs,
    "spice-dipeptides": spice_runs,
}


# --------------------------------------------------------------------------- report


def _fmt(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _stopped(row: dict) -> str:
    reason = row.get("stop_reason")
    if reason is None:
        return "–"
    text = "converged" if reason == "patience" else f"not converged ({reason.replace('_', ' ')})"
    return f"{text}, best {row['best_epoch']}/{row['epochs_run']}"


def markdown(rows: dict) -> str:
    """One table over all runs: test errors, charges/dipoles, stopping, time, parameters."""
    lines = [
        "| run | model | train | E RMSE meV/atom | E RMSE meV/struct | F RMSE meV/Å "
        "| F MAE meV/Å | q MAE me | dipole RMSE me·Å | stopped (best/epochs) | train s "
        "| params |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for key, row in rows.items():
        if "skipped" in row:
            run, model = key.rsplit("/", 1) if "/" in key else (key, "–")
            lines.append(f"| {run} | {model} | skipped: {row['skipped']} ||||||||||")
            continue
        t = row["test"]
        run, model = key.rsplit("/", 1)
        lines.append(
            f"| {run} | {model} | {row['n_train']} | {_fmt(t.get('energy_rmse'), 2)} "
            f"| {_fmt(t.get('energy_per_structure_rmse'), 1)} | {_fmt(t.get('forces_rmse'))} "
            f"| {_fmt(t.get('forces_mae'))} | {_fmt(t.get('charges_mae'), 0)} "
            f"| {_fmt(t.get('dipole_rmse'), 0)} | {_stopped(row)} | {row['train_seconds']:.0f} "
            f"| {row['parameters']} |"
        )
    return "\n".join(lines)


def _safe(text: str) -> str:
    return text.replace("/", "__")


def plot_curves(rows: dict, output: Path) -> list[Path]:
    """Per comparison (a key minus its variant): validation energy and force RMSE
    against epoch, one line per variant, to ``<stem>_curves_<run>.png`` next to
    ``output``. Returns the written paths."""
    from matplotlib.figure import Figure

    groups: dict[str, dict[str, list]] = {}
    for key, row in rows.items():
        if "/" not in key or not row.get("history"):
            continue
        run, variant = key.rsplit("/", 1)
        groups.setdefault(run, {})[variant] = row["history"]
    written = []
    for run, curves in groups.items():
        fig = Figure(figsize=(10, 3.8), layout="constrained")
        axes = fig.subplots(1, 2)
        for variant, history in curves.items():
            for ax, name in zip(axes, ("energy", "forces"), strict=True):
                points = [
                    (h["epoch"], h[f"val_{name}_rmse"]) for h in history if f"val_{name}_rmse" in h
                ]
                if points:
                    ax.plot(*zip(*points, strict=True), label=variant)
        for ax, label in zip(axes, ("energy RMSE (meV/atom)", "force RMSE (meV/Å)"), strict=True):
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"validation {label}")
            ax.set_yscale("log")
            ax.legend()
        fig.suptitle(run)
        path = output.with_name(f"{output.stem}_curves_{_safe(run)}.png")
        _save_figure(fig, path)
        written.append(path)
    return written


def plot_nacl_learning_curve(rows: dict, output: Path) -> Path | None:
    """NaCl(aq) test energy and force RMSE against training-set size, log-log, one line
    per variant, to ``<stem>_nacl_learning_curve.png`` (None without NaCl rows)."""
    from matplotlib.figure import Figure

    lines: dict[str, list] = {}
    for key, row in rows.items():
        parts = key.split("/")
        if parts[0] != "nacl-water" or len(parts) != 3 or "test" not in row:
            continue
        lines.setdefault(parts[2], []).append(
            (row["n_train"], row["test"]["energy_rmse"], row["test"]["forces_rmse"])
        )
    if not lines:
        return None
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    axes = fig.subplots(1, 2)
    for variant, points in lines.items():
        points.sort()
        n, energy, forces = zip(*points, strict=True)
        axes[0].plot(n, energy, "o-", label=variant)
        axes[1].plot(n, forces, "o-", label=variant)
    for ax, label in zip(axes, ("energy RMSE (meV/atom)", "force RMSE (meV/Å)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.set_ylabel(f"test {label}")
        ax.legend()
    fig.suptitle("NaCl(aq) learning curve")
    path = output.with_name(f"{output.stem}_nacl_learning_curve.png")
    _save_figure(fig, path)
    return path


def _save_figure(fig, path: Path) -> None:
    import io

    from hybridpot.fileio import atomic_write

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


# --------------------------------------------------------------------------- main


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; anything else unchanged."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def mace_probe(mace_python: str) -> dict:
    """What the MACE of ``mace_python`` offers (``_mace_train.py --probe``): its version
    ``mace_version``, ``les`` (the latent-Ewald model MACELES is usable), ``les_model``
    (mace-torch has it) and ``les_library`` (the ``les`` package it imports is installed).

    Raises:
        RuntimeError: when that python cannot run MACE.
    """
    done = subprocess.run(
        [mace_python, str(HERE / "_mace_train.py"), "--probe"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"--mace-python {mace_python} cannot run MACE:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def les_skip_reason(probe: dict) -> str:
    """Why ``mace-les`` cannot run with the MACE described by ``probe``."""
    version = probe["mace_version"]
    if not probe["les_model"]:
        return f"mace-torch {version} has no latent-Ewald (LES) long-range model"
    return (
        f"mace-torch {version} has the latent-Ewald model MACELES, but the separate 'les' "
        "library it imports is not installed"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[*ALL_VARIANTS, "all"],
        default=list(DEFAULT_MODELS),
        help="variants to train (default: %(default)s; 'all': every variant)",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data and budget")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workdir", type=Path, default=None, help="prepared data and runs")
    parser.add_argument("--resume", action="store_true", help="keep finished runs in --output")
    parser.add_argument(
        "--extend",
        action="store_true",
        help="continue each run from its checkpoint in --workdir with the new limits",
    )
    parser.add_argument(
        "--sizes", nargs="+", default=None, help="NaCl(aq) training sizes (numbers or 'all')"
    )
    parser.add_argument(
        "--dimer-types", nargs="+", type=int, choices=(0, 2, 3), default=None,
        help="charged-dimer types (default 0 2 3)",
    )  # fmt: skip
    parser.add_argument("--patience", type=int, default=None, help="early-stopping epochs")
    parser.add_argument("--max-epochs", type=int, default=None, help="epoch cap per run")
    parser.add_argument("--max-time", type=float, default=None, help="wall seconds per run")
    parser.add_argument(
        "--seed", type=int, default=TRAINING["seed"], help="training seed (default %(default)s)"
    )
    parser.add_argument(
        "--schedule",
        choices=("plateau", "cosine"),
        default="plateau",
        help="learning rate: plateau (default; halve on a stall, train to convergence) or "
        "cosine (a fixed budget: decay to min_lr over --max-epochs)",
    )
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    parser.add_argument("--mace-python", default=None, help="python of a venv with mace-torch")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "real_data.json")
    args = parser.parse_args(argv)
    global WATER_SIZES, DIMER_TYPES
    WATER_SIZES, DIMER_TYPES = args.sizes, args.dimer_types
    for size in args.sizes or []:
        if size != "all" and not (size.isdigit() and int(size) > 0):
            parser.error(f"--sizes takes positive integers or 'all', got {size!r}")
    for name in ("patience", "max_epochs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.max_time is not None and not args.max_time > 0:
        parser.error(f"--max-time must be > 0 seconds, got {args.max_time}")
    models = list(ALL_VARIANTS) if "all" in args.models else list(dict.fromkeys(args.models))
    if args.schedule == "cosine" and any(m in MACE_VARIANTS for m in models):
        parser.error("--schedule cosine: MACE has no cosine schedule; use --schedule plateau")

    import torch

    from hybridpot.fileio import atomic_write_text
    from hybridpot.train import ConfigError

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    workdir = args.workdir or Path(tempfile.gettempdir()) / "hybridpot-real-data"
    if args.quick and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    network = QUICK_NETWORK if args.quick else NETWORK
    mace = {"python": args.mace_python}
    if args.mace_python and any(m in MACE_VARIANTS for m in models):
        mace.update(mace_probe(args.mace_python))
    old = {}
    if args.resume and args.output.exists():
        old = json.loads(args.output.read_text()).get("runs", {})
    meta = {
        "command": "python benchmarks/real_data.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "threads": args.threads,
        "device": device,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "network": network,
        "variants": VARIANTS,
        "training": TRAINING,
        "stopping": QUICK_STOPPING if args.quick else STOPPING,
        "max_time": args.max_time,
        "mace": mace,
        "published": PUBLISHED,
    }
    rows: dict = {}

    def save():
        report = {"meta": meta, "runs": rows}
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, json.dumps(report, indent=1) + "\n")
        atomic_write_text(args.output.with_suffix(".md"), markdown(rows) + "\n")

    twins: dict = {}
    for dataset in args.datasets:
        folder = args.data_dir / dataset
        if not folder.is_dir():
            print(f"{dataset}: skipped, {folder} is absent", flush=True)
            rows[dataset] = {"skipped": f"{folder} absent"}
            save()
            continue
        stopping = (QUICK_STOPPING if args.quick else STOPPING)[dataset]
        patience = args.patience or stopping["patience"]
        max_epochs = args.max_epochs or stopping["max_epochs"]
        for key, name, overrides, training, files, data_keys in DATASETS[dataset](
            folder, workdir, args.quick, models
        ):
            training = dict(training)
            scale = training.pop("epoch_scale", 1)
            training = {
                **TRAINING,
                **training,
                "device": device,
                "seed": args.seed,
                "epochs": max_epochs * scale,
                "early_stopping_patience": patience * scale,
                "schedule": schedule(args.schedule, patience * scale),
            }
            if args.max_time is not None:
                training["max_time"] = args.max_time
            if name in MACE_VARIANTS:
                settings = {"variant": name, "training": training, "data_keys": data_keys}
                settings = json.loads(json.dumps({**settings, "model": overrides}))
                if key in old and old[key].get("settings") == settings:
                    rows[key] = old[key]
                    print(f"{key}: kept from {args.output}", flush=True)
                    continue
                if not args.mace_python:
                    rows[key] = {"skipped": "no --mace-python (a venv with mace-torch) given"}
                    print(f"{key}: skipped, no --mace-python", flush=True)
                    save()
                    continue
                if name == "mace-les" and not mace["les"]:
                    rows[key] = {"skipped": les_skip_reason(mace)}
                    print(f"{key}: skipped, {rows[key]['skipped']}", flush=True)
                    save()
                    continue
                print(f"{key}: training MACE (<= {training['epochs']} epochs) ...", flush=True)
                try:
                    row = mace_fit_and_test(
                        key,
                        name,
                        training,
                        files,
                        data_keys,
                        overrides.get("atomic_energies"),
                        workdir,
                        args.mace_python,
                        args.threads,
                    )
                except RuntimeError as error:  # MACE's failure is a row, not the end
                    rows[key] = {"skipped": f"MACE failed: {str(error)[-300:]}"}
                    print(f"{key}: {rows[key]['skipped']}", flush=True)
                    save()
                    continue
            else:
                model = {**network, **overrides, **VARIANTS[name]}
                if name == "invariant-hybrid":
                    elements = sorted(
                        {s for a in read(files["train"]) for s in a.get_chemical_symbols()}
                    )
                    reference = {**network, **overrides, **VARIANTS["hybrid"]}
                    cache = json.dumps([reference, elements])
                    if cache not in twins:
                        twins[cache] = invariant_twin(reference, elements)
                    model, twin_params, ref_params = twins[cache]
                    print(
                        f"{key}: invariant twin {model['hidden_irreps']}: {twin_params} "
                        f"parameters against {ref_params} for the equivariant hybrid",
                        flush=True,
                    )
                settings = {"model": model, "training": training, "data_keys": data_keys}
                settings = json.loads(json.dumps(settings))
                if key in old and old[key].get("settings") == settings:
                    rows[key] = old[key]
                    print(f"{key}: kept from {args.output}", flush=True)
                    continue
                print(f"{key}: training (<= {training['epochs']} epochs) ...", flush=True)
                try:
                    row = fit_and_test(
                        key, model, training, files, data_keys, workdir, extend=args.extend
                    )
                except ConfigError as error:  # e.g. --extend with other settings
                    raise SystemExit(f"{key}: {error}") from None
            rows[key] = {"settings": settings, **row}
            t = row["test"]
            print(
                f"{key}: {row['train_seconds']:.0f} s, {_stopped(row)}, energy "
                f"{t.get('energy_rmse', 0):.2f} meV/atom, forces {t.get('forces_rmse', 0):.1f} "
                "meV/Å RMSE",
                flush=True,
            )
            save()
    save()
    print()
    report_plots_and_table(rows, args.output)
    return 0


def report_plots_and_table(rows: dict, output: Path) -> None:
    """Write the PNGs of ``rows`` next to ``output`` (:func:`plot_curves`,
    :func:`plot_nacl_learning_curve`) and print the table and the written paths."""
    plots = plot_curves(rows, output)
    curve = plot_nacl_learning_curve(rows, output)
    print(markdown(rows))
    print(f"\nwritten to {output} and {output.with_suffix('.md')}")
    for path in [*plots, *([curve] if curve else [])]:
        print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
