"""A training process killed with SIGKILL resumes with --resume, losing at most one epoch.

`hybridpot train` runs in a subprocess on a tiny generated data set and is killed (no
chance to clean up) during an epoch and during a checkpoint write, then resumed. The
checkpoint on disk must always load, hold a whole number of finished epochs, and the
final run must end with every epoch logged exactly once.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import pytest
import yaml

import hybridpot
from hybridpot.train import load_checkpoint
from hybridpot.train.logs import read_csv
from hybridpot.train.synthetic import toy_nacl_structures

pytestmark = pytest.mark.slow

# Enough epochs that a kill "at a random moment" (up to 0.5 s after a checkpoint) always
# lands before the end: an epoch of this toy run takes ~0.05-0.2 s, and with 6 epochs a
# fast machine finished the whole run inside the random wait.
EPOCHS = 40

# Runs the CLI in-process; with HYBRIDPOT_TEST_SLOW_WRITE set, every checkpoint write
# writes half of its bytes to the temporary file and then waits, so that the test can
# kill the process in the middle of a checkpoint write.
HARNESS = """
import os, sys, time
if os.environ.get("HYBRIDPOT_TEST_SLOW_WRITE"):
    import io
    import hybridpot.fileio as fileio
    original = fileio.atomic_write
    def slow(path, write):
        if os.path.basename(str(path)) != "checkpoint.pt":
            return original(path, write)
        def half_then_wait(handle):
            buffer = io.BytesIO()
            write(buffer)
            data = buffer.getvalue()
            handle.write(data[: len(data) // 2])
            handle.flush()
            time.sleep(600)
            handle.write(data[len(data) // 2 :])
        return original(path, half_then_wait)
    fileio.atomic_write = slow
from hybridpot.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def run_dir(tmp_path):
    data = tmp_path / "train.xyz"
    ase.io.write(data, toy_nacl_structures(6, seed=31), format="extxyz")
    config = tmp_path / "config.yaml"
    model = {"cutoff": 3.5, "num_layers": 1, "hidden_irreps": "4x0e + 4x1o", "l_max": 1}
    model.update({"num_radial": 4, "radial_mlp": [8], "readout_mlp": [8]})
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"train": str(data), "val_fraction": 0.2},
                "model": model,
                "epochs": EPOCHS,
                "batch_size": 1,
                "plots": False,
                "output_dir": str(tmp_path / "run"),
            }
        )
    )
    return tmp_path


def _start(root: Path, *extra: str, slow_write: bool = False) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("HYBRIDPOT_TEST_SLOW_WRITE", None)
    if slow_write:
        env["HYBRIDPOT_TEST_SLOW_WRITE"] = "1"
    command = [sys.executable, "-c", HARNESS, "train", str(root / "config.yaml"), "--quiet"]
    return subprocess.Popen(
        [*command, *extra],
        env=env,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(condition, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"training ended early:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.02)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process.stdout.close()


def _epochs_on_disk(out: Path) -> int:
    """The finished epochs of the checkpoint, which must always load."""
    state = load_checkpoint(out / "checkpoint.pt")
    assert [row["epoch"] for row in state["history"]] == list(range(1, state["epoch"] + 1))
    return int(state["epoch"])


def test_sigkill_during_epochs_and_checkpoint_writes_resumes(run_dir):
    rng = random.Random(5)
    out = run_dir / "run"
    checkpoint = out / "checkpoint.pt"

    # 1. Killed during an epoch, a random moment after the first checkpoint.
    process = _start(run_dir)
    _wait_for(checkpoint.is_file, process)
    time.sleep(rng.uniform(0.0, 0.5))
    _kill(process)
    done = _epochs_on_disk(out)
    assert 1 <= done < EPOCHS

    # 2. Killed twice in the middle of a checkpoint write (half the bytes on disk).
    for _ in range(2):
        old = set(out.glob(".checkpoint.pt.*"))  # left by the previous kill
        process = _start(run_dir, "--resume", slow_write=True)

        def writing(old=old):
            return any(p.stat().st_size > 0 for p in set(out.glob(".checkpoint.pt.*")) - old)

        _wait_for(writing, process)
        _kill(process)
        assert not any(p.exists() for p in old)  # the resumed run removed the stale file
        # The write in progress was for epoch done + 1: only that epoch is lost.
        assert _epochs_on_disk(out) == done
        assert list(out.glob(".checkpoint.pt.*.tmp"))  # SIGKILL left the temporary file

    # 3. Killed during an epoch again, at a random moment after one more checkpoint.
    process = _start(run_dir, "--resume")
    before = checkpoint.stat().st_mtime_ns
    _wait_for(lambda: checkpoint.stat().st_mtime_ns != before, process)
    time.sleep(rng.uniform(0.0, 0.5))
    _kill(process)
    resumed = _epochs_on_disk(out)
    assert done < resumed <= EPOCHS

    # 4. Resumed to the end: every epoch once, loadable model, no temporary files left.
    process = _start(run_dir, "--resume")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    assert _epochs_on_disk(out) == EPOCHS
    assert [row["epoch"] for row in read_csv(out / "log.csv")] == list(range(1, EPOCHS + 1))
    hybridpot.load_model(out / "model.pt")
    assert not list(out.glob(".*.tmp"))
    log = (out / "train.log").read_text()
    assert log.count("=== ") == 5  # one header per start, appended
