"""The ``hybridpot`` command: train, evaluate, info and demo.

    hybridpot --version
    hybridpot train config.yaml [key=value ...] [--resume] [--overwrite] [--quiet]
    hybridpot train config.yaml --devices K        (K processes, via torchrun)
    torchrun --nproc-per-node K -m hybridpot.cli train config.yaml
    hybridpot pack data.xyz -o data.hpk           (for data sets larger than memory)
    hybridpot evaluate model.pt data.xyz [-o predictions.xyz] [--calibration-plot c.png]
    hybridpot select pool.xyz --model model.pt -n K -o picked.xyz [--exclude train.xyz]
    hybridpot active config.yaml
    hybridpot ensemble config.yaml -n 4 [key=value ...]
    hybridpot info model.pt
    hybridpot demo [--quick] [--output DIR]

:func:`main` returns the exit code: 0 on success, 2 for a user error (one line on
stderr naming the problem, no traceback; ``--traceback`` shows it), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import sys
import textwrap
from collections.abc import Sequence

from . import __version__

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error caused by the command's input, reported as one line."""


def _parser() -> argparse.ArgumentParser:
    from .train.config import DataConfig

    parser = argparse.ArgumentParser(
        prog="hybridpot",
        description="Hybrid machine-learned interatomic potentials: train, evaluate, inspect.",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of errors"
    )
    parser.add_argument("--version", action="version", version=f"hybridpot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a model from a YAML config",
        description="Train a model. Overrides use dotted keys: optim.lr=1e-3 model.cutoff=4.5",
    )
    train.add_argument("config", help="YAML training config (see docs/training.md)")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    train.add_argument(
        "--resume", action="store_true", help="continue from output_dir/checkpoint.pt"
    )
    train.add_argument(
        "--overwrite", action="store_true", help="start afresh over an existing checkpoint"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    train.add_argument(
        "--devices",
        type=int,
        default=None,
        metavar="K",
        help="train with K processes (torchrun, DistributedDataParallel; batch_size is per "
        "process): K GPUs with device=cuda, else K CPU processes (gloo)",
    )

    pack = sub.add_parser(
        "pack",
        help="convert structures to a packed file read on demand during training",
        description="Write labelled structures (extxyz or any ASE-readable file) to a packed, "
        "indexed file that training reads structure by structure (data.train: data.hpk).",
    )
    pack.add_argument("data", help="structures with reference labels")
    pack.add_argument("-o", "--output", required=True, help="packed file to write (e.g. data.hpk)")
    pack.add_argument("--format", default=None, help="ASE format of the data file")

    evaluate = sub.add_parser(
        "evaluate",
        help="errors of a model on labelled structures",
        description="Print MAE/RMSE per labelled property; optionally write the predictions.",
    )
    evaluate.add_argument("model", help="model file written by hybridpot train")
    evaluate.add_argument("data", help="structures with reference labels (extxyz or ASE-readable)")
    evaluate.add_argument("-o", "--output", help="write predictions to this extxyz file")
    evaluate.add_argument("--batch-size", type=int, default=8, help="structures per batch")
    evaluate.add_argument("--format", default=None, help="ASE format of the data file")
    evaluate.add_argument("--device", default="cpu", help="torch device (cpu, cuda, ...)")
    defaults = DataConfig()
    for name in ("energy", "forces", "stress", "charges", "dipole", "bec"):
        evaluate.add_argument(
            f"--{name.replace('_', '-')}-key",
            default=getattr(defaults, f"{name}_key"),
            help=f"label key of the {name.replace('_', ' ')} (default: %(default)s)",
        )
    evaluate.add_argument(
        "--total-charge-key",
        default=None,
        help="info key of the total charge (default: the key the model was trained with)",
    )
    evaluate.add_argument(
        "--fragment-key",
        default=None,
        help="arrays key of per-atom fragment ids (default: the key the model was trained with)",
    )
    evaluate.add_argument(
        "--fragment-charges-key",
        nargs="+",
        default=None,
        help="info key of the fragment charges, or one info key per fragment (default: "
        "the key(s) the model was trained with)",
    )
    evaluate.add_argument(
        "--fragment-split-key",
        default=None,
        help="info key of a split index k: atoms 0..k-1 are fragment 0, the rest fragment "
        "1 (default: the key the model was trained with, if any)",
    )
    evaluate.add_argument(
        "--electric-field-key",
        default=defaults.electric_field_key,
        help="info key of a uniform electric field in V/Å (default: %(default)s)",
    )
    evaluate.add_argument(
        "--bec",
        action="store_true",
        help="also predict Born effective charges (always done when the data carry them)",
    )
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument(
        "--calibration-plot",
        metavar="PNG",
        help="models with an uncertainty: write the calibration plot to this file",
    )

    select = sub.add_parser(
        "select",
        help="pick the most informative structures of a pool (uncertainty + diversity)",
        description="Greedy uncertainty x descriptor-distance selection (docs/uncertainty.md).",
    )
    select.add_argument("pool", help="candidate structures (extxyz or ASE-readable)")
    select.add_argument("--model", required=True, help="model file with a fitted uncertainty")
    select.add_argument("-n", type=int, required=True, help="how many structures to pick")
    select.add_argument("-o", "--output", required=True, help="extxyz file of the picks")
    select.add_argument(
        "--exclude", help="structures already labelled: their copies are never picked"
    )
    select.add_argument(
        "--criterion", default="forces", help="forces (largest force sigma) or energy"
    )
    select.add_argument("--batch-size", type=int, default=8, help="structures per batch")
    select.add_argument("--format", default=None, help="ASE format of the structure files")

    ensemble = sub.add_parser(
        "ensemble",
        help="train a deep ensemble (several seeds) and calibrate its spread",
        description="Train -n models of a training config with seeds seed, seed+1, ... into "
        "output_dir/member_<k>, calibrate on the validation set, write output_dir/ensemble.json "
        "(usable wherever a model file is: evaluate, select).",
    )
    ensemble.add_argument("config", help="YAML training config (see docs/training.md)")
    ensemble.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    ensemble.add_argument("-n", type=int, default=4, help="members (default: %(default)s)")
    ensemble.add_argument("--overwrite", action="store_true", help="retrain every member")
    ensemble.add_argument("--quiet", action="store_true", help="no progress bars")

    active = sub.add_parser(
        "active",
        help="active learning: train, explore with MD, select, label, retrain",
        description="Run (or resume) the active-learning loop of a YAML config.",
    )
    active.add_argument("config", help="active-learning YAML config (docs/uncertainty.md)")

    for name in ("energy", "forces", "stress", "charges", "dipole", "total_charge", "weight"):
        pack.add_argument(
            f"--{name.replace('_', '-')}-key",
            default=getattr(defaults, f"{name}_key"),
            help=f"label key of the {name.replace('_', ' ')} (default: %(default)s)",
        )
    pack.add_argument(
        "--fragment-key",
        default=defaults.fragment_key,
        help="atoms.arrays key of per-atom fragment ids (default: %(default)s)",
    )
    pack.add_argument(
        "--fragment-charges-key",
        nargs="+",
        default=None,
        help="atoms.info key holding the fragment charges, or one key per fragment "
        f"(e.g. chargeA chargeB) (default: {defaults.fragment_charges_key})",
    )
    pack.add_argument(
        "--fragment-split-key",
        default=None,
        help="atoms.info key k: atoms 0..k-1 form fragment 0, the rest fragment 1 "
        "(e.g. indexB; default: not used)",
    )
    pack.add_argument(
        "--electric-field-key",
        default=defaults.electric_field_key,
        help="atoms.info key of an applied field, V/Å (default: %(default)s)",
    )

    info = sub.add_parser("info", help="describe a saved model")
    info.add_argument("model", help="model file")

    export = sub.add_parser(
        "export",
        help="write a self-contained metatomic (TorchScript) file that needs no hybridpot",
        description="Export a model for ASE, LAMMPS, i-PI, TorchSim ... through metatomic "
        "(needs the deploy extra: pip install 'hybridpot[deploy]'). See docs/deployment.md.",
    )
    export.add_argument("model", help="model file written by hybridpot train")
    export.add_argument("-o", "--output", required=True, help="exported file to write")
    export.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default=None,
        help="dtype of the exported model (default: the model file's)",
    )
    export.add_argument("--name", default="hybridpot model", help="model name in the metadata")
    export.add_argument("--licence", default=None, help="licence note stored in the metadata")
    export.add_argument("--author", action="append", default=[], help="author (repeatable)")

    demo = sub.add_parser(
        "demo",
        help="generate NaCl reference data, train hybrid and short-range models, compare",
    )
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--output", default="demo-output", help="output folder (%(default)s)")
    return parser


# ----------------------------------------------------------------------------- commands
def _train(args: argparse.Namespace) -> int:
    from .train.config import load_config
    from .train.logs import ConsoleLog
    from .train.metrics import format_table
    from .train.trainer import TRAIN_LOG, Trainer

    if args.devices is not None:
        return _launch(args)
    config = load_config(args.config, args.overrides)
    if args.quiet:
        config.quiet = True
    from .train.distributed import shutdown

    with ConsoleLog() as log:
        trainer = Trainer(config, resume=args.resume, overwrite=args.overwrite)
        if not trainer.dist.is_main:  # rank 0 prints and logs for the run
            trainer.fit()
            shutdown()
            return 0
        # Only now is the output folder settled (--overwrite has cleared it, a refused
        # run has touched nothing): the console output goes to its train.log from here.
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        command = " ".join(["hybridpot", *args.argv])
        if trainer.dist.active:
            command += f"  ({trainer.dist.world_size} processes)"
        log.start(trainer.out / TRAIN_LOG, f"=== {now} hybridpot {__version__}: {command}")
        result = trainer.fit()
        shutdown()
        print(f"trained {len(result.history)} epochs; best epoch {result.best_epoch}")
        print(f"model: {result.output_dir / 'model.pt'}")
        for title, metrics in (("validation", result.metrics), ("test", result.test_metrics)):
            if metrics:
                print(f"\n{title} errors:")
                print(format_table(metrics))
    return 0


def _launch(args: argparse.Namespace) -> int:
    """``hybridpot train ... --devices K``: run the same command in K processes under
    ``torchrun`` (a free local port, this Python); returns torchrun's exit code."""
    import os
    import subprocess

    if args.devices < 1:
        raise UserError(f"--devices must be a positive integer, got {args.devices}")
    if "WORLD_SIZE" in os.environ:
        raise UserError("--devices cannot be used inside torchrun (it starts torchrun itself)")
    argv, skip = [], False
    for item in args.argv:  # the same command without --devices K
        if skip:
            skip = False
            continue
        if item == "--devices":
            skip = True
            continue
        if item.startswith("--devices="):
            continue
        argv.append(item)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={args.devices}",
        "-m",
        "hybridpot.cli",
        *argv,
    ]
    return subprocess.run(command, check=False).returncode


def _pack(args: argparse.Namespace) -> int:
    import ase.io

    from .data.packed import pack_structures
    from .fileio import require_file
    from .train.config import DataConfig

    require_file(args.data, "structure file")
    data_keys = DataConfig(
        format=args.format,
        **{
            f"{n}_key": getattr(args, f"{n}_key")
            for n in ("energy", "forces", "stress", "charges", "dipole", "total_charge", "weight")
        },
        fragment_key=args.fragment_key,
        fragment_charges_key=(
            DataConfig.fragment_charges_key
            if args.fragment_charges_key is None
            else args.fragment_charges_key[0]
            if len(args.fragment_charges_key) == 1
            else list(args.fragment_charges_key)
        ),
        fragment_split_key=args.fragment_split_key,
        electric_field_key=args.electric_field_key,
    )
    try:
        images = ase.io.iread(args.data, ":", format=args.format)
    except Exception as error:  # ASE raises many kinds for unreadable files
        raise UserError(f"cannot read structures from {args.data!r}: {error}") from None
    count = pack_structures(images, args.output, data_keys, source=args.data)
    print(f"packed {count} structures from {args.data} into {args.output}")
    return 0


def _load_model(path: str, device: str = "cpu"):
    from .device import resolve_device
    from .model import load_model

    device = resolve_device(device, "--device")
    if str(path).endswith(".json"):
        from .uncertainty.ensemble import load_ensemble

        return load_ensemble(path).to(device)

    try:
        model = load_model(path)
    except RuntimeError as error:  # weights that do not fit this version's architecture
        first = str(error).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])
        raise UserError(
            f"cannot load model {path!r}: its weights do not match this version of hybridpot "
            f"({detail})"
        ) from None
    return model.to(device)


def _evaluate(args: argparse.Namespace) -> int:
    from .data.dataset import read_structures
    from .train.config import DataConfig
    from .train.evaluate import evaluate_structures, write_predictions
    from .train.metrics import format_table

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}")
    from .model.io import model_total_charge_key, resolve_fragment_keys

    model = _load_model(args.model, args.device)
    if args.total_charge_key is None:
        args.total_charge_key = model_total_charge_key(model)
    # Fragments are read the way the model was trained unless a key is given here.
    charges_key = args.fragment_charges_key
    if charges_key is not None and len(charges_key) == 1:
        charges_key = charges_key[0]
    fragment_keys = resolve_fragment_keys(
        model, args.fragment_key, charges_key, args.fragment_split_key
    )
    data_keys = DataConfig(
        format=args.format,
        energy_key=args.energy_key,
        forces_key=args.forces_key,
        stress_key=args.stress_key,
        charges_key=args.charges_key,
        total_charge_key=args.total_charge_key,
        dipole_key=args.dipole_key,
        bec_key=args.bec_key,
        **fragment_keys,
        electric_field_key=args.electric_field_key,
    )
    images = read_structures(args.data, args.format)
    metrics, counts, predictions = evaluate_structures(
        model,
        images,
        data_keys,
        batch_size=args.batch_size,
        progress=not args.quiet,
        source=args.data,
        bec=True if args.bec else None,
    )
    print(f"{len(images)} structures from {args.data}")
    print(format_table(metrics, counts))
    _report_calibration(images, predictions, data_keys, args.calibration_plot)
    if args.output:
        write_predictions(images, predictions, args.output, data_keys)
        print(f"predictions written to {args.output}")
    return 0


def _select(args: argparse.Namespace) -> int:
    from .data.dataset import graphs_from_structures, read_structures
    from .reference import write_extxyz
    from .train.evaluate import check_elements
    from .uncertainty import select_structures

    if args.n < 1:
        raise UserError(f"-n must be a positive integer, got {args.n}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {args.batch_size}")
    model = _load_model(args.model)
    images = read_structures(args.pool, args.format)
    check_elements(images, model.config["elements"], args.pool)
    pool = graphs_from_structures(images, float(model.cutoff), source=args.pool)
    exclude = None
    if args.exclude:
        labelled = read_structures(args.exclude, args.format)
        check_elements(labelled, model.config["elements"], args.exclude)
        exclude = graphs_from_structures(labelled, float(model.cutoff), source=args.exclude)
    chosen = select_structures(
        model, pool, args.n, exclude=exclude, criterion=args.criterion, batch_size=args.batch_size
    )
    picked = []
    for index in chosen.indices:
        atoms = images[index].copy()
        atoms.calc = images[index].calc
        atoms.info["pool_index"] = index
        atoms.info["selection_uncertainty"] = float(chosen.uncertainty[index])
        picked.append(atoms)
    if not picked:
        raise UserError("no structure of the pool is new: every one copies a labelled one")
    write_extxyz(picked, args.output)
    print(
        f"picked {len(picked)} of {len(images)} structures ({len(chosen.duplicates)} copies "
        f"of labelled ones skipped); {args.criterion} uncertainty of the picks: "
        + ", ".join(f"{chosen.uncertainty[i]:.3g}" for i in chosen.indices)
    )
    print(f"written to {args.output}")
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from .train.config import load_config
    from .uncertainty.ensemble import train_ensemble

    if args.n < 2:
        raise UserError(f"-n must be at least 2 (an ensemble), got {args.n}")
    config = load_config(args.config, args.overrides)
    if args.quiet:
        config.quiet = True
    path = train_ensemble(config, args.n, overwrite=args.overwrite)
    print(f"ensemble of {args.n} models: {path}")
    return 0


def _active(args: argparse.Namespace) -> int:
    from .train.active import load_active_config, run_active

    result = run_active(load_active_config(args.config))
    print(f"active learning: {len(result.history)} rounds, {result.n_labels} labels")
    print(f"model: {result.model_path}")
    return 0


def _report_calibration(images, predictions, data_keys, plot_path) -> None:
    """Print the calibration table of a model's uncertainties (and plot it)."""
    from .train.evaluate import uncertainty_errors
    from .uncertainty import calibration_metrics, plot_calibration

    pairs = uncertainty_errors(images, predictions, data_keys)
    if not pairs:
        if plot_path:
            raise UserError(
                "--calibration-plot: the model has no uncertainty (or the data no labels "
                "to compare it with)"
            )
        return
    print("\nuncertainty calibration (sigma against |error|):")
    print(format_calibration({name: calibration_metrics(*pair) for name, pair in pairs.items()}))
    if plot_path:
        plot_calibration(pairs, plot_path)
        print(f"calibration plot written to {plot_path}")


def format_calibration(table: dict[str, dict[str, float]]) -> str:
    """Plain-text calibration table: property, Spearman, miscalibration area, alpha,
    RMSE and RMS sigma (the property's unit), number of values."""
    header = (
        f"{'property':<10} {'spearman':>9} {'mis.area':>9} {'alpha':>8} "
        f"{'rmse':>11} {'rms sigma':>11} {'values':>8}"
    )
    lines = [header, "-" * len(header)]
    for name, m in table.items():
        lines.append(
            f"{name:<10} {m['spearman']:>9.3f} {m['miscalibration_area']:>9.3f} "
            f"{m['alpha']:>8.3f} {m['rmse']:>11.4g} {m['mean_sigma']:>11.4g} {m['count']:>8d}"
        )
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    config = model.config
    n_params = sum(p.numel() for p in model.parameters())
    dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    from .model.io import model_fragment_keys, model_total_charge_key

    k = model_fragment_keys(model)
    charges = k["fragment_charges_key"]
    charges = [charges] if isinstance(charges, str) else charges
    fragments = (
        (
            f"fragments split at info[{k['fragment_split_key']!r}]"
            if k["fragment_split_key"]
            else f"fragment ids arrays[{k['fragment_key']!r}]"
        )
        + " with charges "
        + ", ".join(f"info[{c!r}]" for c in charges)
    )
    if config.get("coulomb"):
        kind = "hybrid (short-range network + Coulomb)"
    else:
        kind = "short-range only"
    lines = [
        f"model:       {args.model}",
        f"type:        {type(model).__name__}, {kind}",
        f"elements:    {', '.join(config['elements'])}",
        f"cutoff:      {config['cutoff']} Å",
        f"parameters:  {n_params:,}",
        f"dtype:       {str(dtype).replace('torch.', '')}",
        f"data keys:   total charge info[{model_total_charge_key(model)!r}]; {fragments}",
        "",
        "architecture:",
        textwrap.indent(repr(model), "  "),
        "",
        "config:",
    ]
    width = max(len(k) for k in config)
    lines += [f"  {k:<{width}}  {json.dumps(v)}" for k, v in config.items()]
    metadata = getattr(model, "metadata", None) or {}
    lines += ["", "provenance:"]
    if metadata:
        lines += textwrap.indent(json.dumps(metadata, indent=2), "  ").splitlines()
    else:
        lines.append("  (none recorded)")
    print("\n".join(lines))
    return 0


def _export(args: argparse.Namespace) -> int:
    import torch

    from .model.export import DEFAULT_LICENCE, export_model

    model = _load_model(args.model)
    if args.dtype is not None:
        model = model.to(getattr(torch, args.dtype))
    try:
        export_model(
            model,
            args.output,
            name=args.name,
            licence=args.licence or DEFAULT_LICENCE,
            authors=args.author,
        )
    except ImportError as error:
        raise UserError(str(error)) from None
    print(
        f"wrote {args.output} (metatomic model: load it without hybridpot, see docs/deployment.md)"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.output, args.quick)
    return 0


class _StderrHandler(logging.Handler):
    """Warnings of hybridpot's modules as ``hybridpot: warning: ...`` lines on the current
    ``sys.stderr`` (looked up at each message, so a train.log copy sees them too)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(f"hybridpot: warning: {record.getMessage()}", file=sys.stderr)
        except Exception:  # noqa: BLE001 (a warning must never stop the command)
            self.handleError(record)


def _log_warnings_to_stderr() -> None:
    logger = logging.getLogger("hybridpot")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler(logging.WARNING)
        logger.addHandler(handler)


_COMMANDS = {
    "train": _train,
    "pack": _pack,
    "evaluate": _evaluate,
    "select": _select,
    "active": _active,
    "ensemble": _ensemble,
    "info": _info,
    "export": _export,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hybridpot`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 success, 2 user error (bad arguments, config, files, data),
        130 interrupted by Ctrl-C.
    """
    _log_warnings_to_stderr()
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # key=value overrides may come after options (train cfg --quiet epochs=3), which
        # argparse alone does not allow: collect the leftovers that look like overrides.
        args, extra = parser.parse_known_args(argv)
        overrides = [a for a in extra if "=" in a and not a.startswith("-")]
        unknown = [a for a in extra if a not in overrides]
        if args.command in ("train", "ensemble"):
            args.overrides += overrides
        else:
            unknown = extra
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        args.argv = argv
    except SystemExit as exit_:  # argparse has printed its usage message
        return int(exit_.code or 0)
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"hybridpot {args.command}: interrupted", file=sys.stderr)
        if args.command == "train":
            print("  continue with: hybridpot train ... --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UserError, ValueError, TypeError, OSError, FloatingPointError) as error:
        if args.traceback:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"hybridpot {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
