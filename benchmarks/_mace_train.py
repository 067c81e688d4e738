"""MACE side of benchmarks/real_data.py: train MACE on the same files, test it, print JSON.

Runs inside a virtual environment with mace-torch (it pins e3nn 0.4.4, which hybridpot's
environment does not share), made with (tested: mace-torch 0.3.16 on torch 2.13.0, CPU):

    python3 -m venv /work/mace-venv
    /work/mace-venv/bin/pip install torch==2.13.0
    /work/mace-venv/bin/pip install mace-torch

and called by ``real_data.py --mace-python /work/mace-venv/bin/python``. Training uses
MACE's own CLI (``python -m mace.cli.run_train``) with a model of the size of the hybridpot
benchmark network: 2 interactions, cutoff 5 Å, 32 channels with L <= 1 (hidden irreps
32x0e + 32x1o), spherical harmonics to l = 2, correlation order 2, 8 Bessel functions,
float32, EMA 0.99, the same energy/forces loss weights, batch size, learning rate,
early-stopping patience (MACE's ``--patience``), a plateau schedule (factor 0.5, patience
P/3) and epoch cap. A wall-time budget (``--max-time``) is enforced from outside: the
training process is stopped when it runs out and MACE is restarted from its best
checkpoint (``--restart_latest``) with no epochs left, which exports that checkpoint.

``--les`` trains MACE's latent-Ewald model (``--model MACELES``); it needs the separate
``les`` library, which mace-torch does not install and PyPI does not have:
``/work/mace-venv/bin/pip install --no-deps git+https://github.com/ChengUCB/les``
(tested: les 0.1.0, commit c8063fa). ``--probe`` prints the MACE version and
whether the LES option is usable here.

Prints one JSON line: test energy RMSE (meV/atom) and energy RMSE/MAE per structure (meV),
force RMSE/MAE (meV/Å), parameters, training seconds, epochs run, best epoch, stop reason
("patience", "max_epochs", "max_time") and the per-epoch validation history.
"""

import os

# e3nn 0.4.4 (pinned by mace-torch) loads its own bundled constants.pt with a plain
# torch.load, which torch >= 2.6 refuses by default. That file ships with e3nn itself, so
# allow it in this MACE-only worker process (hybridpot itself never does this).
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

NAME = "mace"


def probe() -> dict:
    """MACE version and whether ``--model MACELES`` can run (its ``les`` import works)."""
    import mace
    from mace.tools import arg_parser

    version = getattr(mace, "__version__", None)
    if version is None:
        from mace.__version__ import __version__ as version
    has_model = "MACELES" in arg_parser.build_default_arg_parser().format_help()
    try:
        import les  # noqa: F401

        has_library = True
    except ImportError:
        has_library = False
    return {
        "mace_version": version,
        "les": has_model and has_library,
        "les_model": has_model,
        "les_library": has_library,
    }


def mace_command(args, max_epochs: int, restart: bool) -> list[str]:
    """The ``run_train`` command line for ``args`` (see the module docstring)."""
    command = [
        sys.executable, "-m", "mace.cli.run_train",
        "--name", NAME,
        "--work_dir", str(args.workdir),
        "--train_file", str(args.workdir / "train.xyz"),
        "--valid_file", str(args.workdir / "valid.xyz"),
        "--energy_key", "REF_energy",
        "--forces_key", "REF_forces",
        "--model", "MACELES" if args.les else "MACE",
        "--r_max", str(args.cutoff),
        "--num_radial_basis", "8",
        "--num_interactions", "2",
        "--num_channels", "32",
        "--max_L", "1",
        "--max_ell", "2",
        "--correlation", "2",
        "--batch_size", str(args.batch_size),
        "--valid_batch_size", str(args.batch_size),
        "--max_num_epochs", str(max_epochs),
        "--patience", str(args.patience),
        "--eval_interval", "1",
        "--lr", str(args.lr),
        "--scheduler", "ReduceLROnPlateau",
        "--lr_factor", "0.5",
        "--scheduler_patience", str(max(1, args.patience // 3)),
        "--loss", "weighted",
        "--energy_weight", str(args.energy_weight),
        "--forces_weight", str(args.forces_weight),
        "--ema",
        "--ema_decay", "0.99",
        "--default_dtype", "float32",
        "--device", args.device,
        "--seed", str(args.seed),
        "--error_table", "PerAtomRMSE",
        "--save_cpu",
        "--num_workers", "0",
    ]  # fmt: skip
    if args.atomic_energies:
        from ase.data import atomic_numbers

        e0s = {atomic_numbers[s]: float(e) for s, e in json.loads(args.atomic_energies).items()}
        command += ["--E0s", repr(e0s)]  # MACE parses a Python dict literal
    else:
        command += ["--E0s", "average"]  # least squares over the training set, like ours
    if args.charge_key:
        command += ["--total_charge_key", args.charge_key]
    if restart:
        command.append("--restart_latest")
    return command


def labels(atoms, args) -> tuple:
    """Reference energy (eV) and forces (eV/Å, (N, 3)) of ``atoms`` under the given keys
    (info/arrays first, then a single-point calculator)."""
    import numpy as np

    energy = atoms.info.get(args.energy_key)
    if energy is None:
        energy = atoms.get_potential_energy()
    forces = atoms.arrays.get(args.forces_key)
    if forces is None:
        forces = atoms.get_forces()
    return float(energy), np.array(forces, dtype=float)


def relabel(source: str, target: Path, args) -> None:
    """Copy ``source`` to ``target`` with the labels under ``REF_energy``/``REF_forces``:
    MACE warns that the keys ``energy``/``forces`` clash with ASE's calculator results."""
    import ase.io

    images = []
    for atoms in ase.io.read(source, ":"):
        energy, forces = labels(atoms, args)
        new = atoms.copy()
        new.calc = None
        new.info["REF_energy"] = energy
        new.arrays["REF_forces"] = forces
        images.append(new)
    ase.io.write(target, images, format="extxyz")


def history(workdir: Path) -> list[dict]:
    """Per-epoch validation rows of MACE's results file (meV/atom and meV/Å)."""
    rows = []
    for path in sorted((workdir / "results").glob(f"{NAME}_run-*_train.txt")):
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("mode") == "eval" and entry.get("epoch") is not None:
                rows.append(
                    {
                        "epoch": int(entry["epoch"]) + 1,
                        "val_loss": float(entry["loss"]),
                        "val_energy_rmse": 1000.0 * float(entry["rmse_e_per_atom"]),
                        "val_forces_rmse": 1000.0 * float(entry["rmse_f"]),
                    }
                )
    return rows


def best_checkpoint_epoch(workdir: Path) -> int | None:
    """Epoch number (MACE's, 0-based) of the newest checkpoint file, None without one."""
    epochs = [
        int(m.group(1))
        for p in (workdir / "checkpoints").glob("*.pt")
        if (m := re.search(r"_epoch-(\d+)", p.name))
    ]
    return max(epochs) if epochs else None


def test_metrics(model_path: Path, test_file: str, args) -> tuple[dict, int, int]:
    """Energy (per atom, per structure) and force errors of the exported model on the
    test file, in meV/atom, meV and meV/Å; the number of test structures; the model's
    parameter count (read from the model MACE's own calculator loaded: this script never
    unpickles a file itself)."""
    import ase.io
    import numpy as np
    from mace.calculators import MACECalculator

    calc = MACECalculator(model_paths=str(model_path), device=args.device, default_dtype="float32")
    e_atom, e_struct, forces = [], [], []
    for atoms in ase.io.read(test_file, ":"):
        reference_energy, reference_forces = labels(atoms, args)
        probe_atoms = atoms.copy()
        probe_atoms.calc = calc
        energy = float(probe_atoms.get_potential_energy())
        predicted = probe_atoms.get_forces()
        e_struct.append(1000.0 * (energy - reference_energy))
        e_atom.append(e_struct[-1] / len(atoms))
        forces.append(1000.0 * (predicted - reference_forces).ravel())
    e_atom, e_struct, forces = np.array(e_atom), np.array(e_struct), np.concatenate(forces)
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    return (
        {
            "energy_rmse": rms(e_atom),
            "energy_mae": float(np.mean(np.abs(e_atom))),
            "energy_per_structure_rmse": rms(e_struct),
            "energy_per_structure_mae": float(np.mean(np.abs(e_struct))),
            "forces_rmse": rms(forces),
            "forces_mae": float(np.mean(np.abs(forces))),
        },
        len(e_atom),
        sum(p.numel() for model in calc.models for p in model.parameters()),
    )


def run(command: list[str], workdir: Path, timeout: float | None) -> bool:
    """Run ``command`` (its output to workdir/mace.log); True when it was stopped by
    ``timeout`` seconds. Raises RuntimeError when it fails."""
    log = workdir / "mace.log"
    with open(log, "a") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return True
    if code != 0:
        raise RuntimeError(f"MACE training failed (exit {code}):\n{log.read_text()[-3000:]}")
    return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--probe", action="store_true", help="print version and LES support")
    parser.add_argument("--train")
    parser.add_argument("--valid")
    parser.add_argument("--test")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--charge-key", default=None)
    parser.add_argument("--atomic-energies", default=None, help="JSON {symbol: eV}")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=1000)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--max-time", type=float, default=None, help="wall seconds")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--energy-weight", type=float, default=100.0)
    parser.add_argument("--forces-weight", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--les", action="store_true", help="MACE with latent Ewald (LES)")
    args = parser.parse_args()
    info = probe()
    if args.probe:
        print(json.dumps(info))
        return 0
    for name in ("train", "valid", "test", "workdir"):
        if getattr(args, name) is None:
            parser.error(f"--{name} is required")
    if args.les and not info["les"]:
        parser.error(f"--les: mace-torch {info['mace_version']} here cannot run MACELES ({info})")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import shutil

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    relabel(args.train, args.workdir / "train.xyz", args)
    relabel(args.valid, args.workdir / "valid.xyz", args)
    start = time.perf_counter()
    timed_out = run(mace_command(args, args.max_epochs, False), args.workdir, args.max_time)
    if timed_out:
        epoch = best_checkpoint_epoch(args.workdir)
        if epoch is None:
            raise RuntimeError(f"--max-time {args.max_time} s ran out before the first epoch")
        # Restart from the best checkpoint with no epochs left: MACE exports it.
        run(mace_command(args, epoch, True), args.workdir, None)
    seconds = time.perf_counter() - start
    rows = history(args.workdir)
    log = (args.workdir / "mace.log").read_text()
    if timed_out:
        reason = "max_time"
    elif "Stopping optimization after" in log:
        reason = "patience"
    else:
        reason = "max_epochs"
    model_path = args.workdir / f"{NAME}.model"
    if not model_path.is_file():
        raise FileNotFoundError(f"MACE wrote no model at {model_path}")
    metrics, n_test, parameters = test_metrics(model_path, args.test, args)
    best = min(rows, key=lambda r: r["val_loss"])["epoch"] if rows else None
    import ase.io

    print(
        json.dumps(
            {
                "code": "mace",
                "mace_version": info["mace_version"],
                "model": "MACELES" if args.les else "MACE",
                "hidden_irreps": "32x0e + 32x1o",
                "train_seconds": seconds,
                "epochs_run": max((r["epoch"] for r in rows), default=0),
                "best_epoch": best,
                "stop_reason": reason,
                "parameters": parameters,
                "n_train": len(ase.io.read(args.train, ":")),
                "n_test": n_test,
                "test": metrics,
                "history": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
