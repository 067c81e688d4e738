"""Multi-process training (gloo, CPU ranks): K ranks x batch b == 1 rank x batch K*b.

Two processes started by ``torchrun`` train on mixed data (periodic cells and clusters,
partly missing labels, custom weights, a charged cluster) with per-rank batch 3; one
process trains with batch 6. The global loss normalisation and the summed gradients make
the two runs the same computation up to the order of floating-point sums, so in float64
every step's loss and every weight after every step agree to 1e-10 (the differences are
~1e-15: one reduction order against another). The last global batch of the epoch has one
structure, so rank 1 has none and takes part with a weight-0 stand-in; validation is
sharded too (eval batch 1 per rank, 2 globally).

A 2-rank run killed (SIGKILL) in the middle of an epoch resumes on ONE rank with batch 6
(the same global batch) and ends with the weights of a run never interrupted.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import pytest
import torch

import hybridpot
from hybridpot.train import load_checkpoint, load_config
from hybridpot.train.logs import read_csv
from hybridpot.train.synthetic import toy_nacl_clusters, toy_nacl_structures
from hybridpot.train.trainer import Trainer

pytestmark = pytest.mark.slow

ROOT = Path(hybridpot.__file__).resolve().parent.parent

COMMON = [
    "quiet=true",
    "plots=false",
    "dtype=float64",
    "data.val_fraction=0.25",
    "loss.stress=1.0",
    "loss.charges=1.0",
    "loss.dipole=1.0",
    "optim.lr=0.005",
    "model.cutoff=3.5",
    "model.num_layers=1",
    "model.hidden_irreps='8x0e + 8x1o'",
    "model.l_max=1",
    "model.num_radial=4",
    "model.radial_mlp=[8]",
]

# Runs a Trainer (under torchrun or alone) and saves, on rank 0, the loss of every step
# and the weights after it.
HARNESS = """
import sys, torch
from hybridpot.train import load_config
from hybridpot.train.trainer import Trainer
from hybridpot.train.distributed import shutdown
config = load_config(None, sys.argv[2:])
steps = []
def record(trainer, loss):
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    steps.append((loss, flat.clone()))
trainer = Trainer(config)
trainer.fit(on_step=record)
if trainer.dist.is_main:
    torch.save({"losses": [s[0] for s in steps], "weights": torch.stack([s[1] for s in steps]),
                "world": trainer.dist.world_size}, sys.argv[1])
shutdown()
"""


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def _torchrun(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        *args,
    ]


@pytest.fixture
def mixed_data(tmp_path):
    images = toy_nacl_structures(7, seed=11) + toy_nacl_clusters(4, pairs=2, seed=12)
    del images[1].calc.results["forces"]
    del images[2].calc.results["energy"]
    del images[8].calc.results["charges"]
    images[3].info["weight"] = 3.0
    images[4].info["weight"] = 0.5
    images[9].info["charge"] = 1.0
    path = tmp_path / "mixed.xyz"
    ase.io.write(path, images, format="extxyz")
    return path


def _overrides(data, out, batch, *extra):
    return [
        f"data.train={data}",
        f"output_dir={out}",
        f"batch_size={batch}",
        f"eval_batch_size={batch // 3}",
        "epochs=2",
        *COMMON,
        *extra,
    ]


def test_two_ranks_equal_one_rank_with_twice_the_batch(tmp_path, mixed_data):
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    two = tmp_path / "two.pt"
    result = subprocess.run(
        _torchrun(2, str(harness), str(two), *_overrides(mixed_data, tmp_path / "r2", 3)),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    # The one-process run, here.
    steps = []

    def record(trainer, loss):
        flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        steps.append((loss, flat.clone()))

    config = load_config(None, _overrides(mixed_data, tmp_path / "r1", 6))
    trainer = Trainer(config)
    assert trainer.dist.world_size == 1
    n_train = len(trainer.data.train)
    assert n_train % 6 == 2  # rank 1 gets a weight-0 stand-in in the last step
    trainer.fit(on_step=record)

    distributed = torch.load(two, weights_only=True)
    assert distributed["world"] == 2
    losses = torch.tensor([s[0] for s in steps], dtype=torch.float64)
    weights = torch.stack([s[1] for s in steps])
    assert len(distributed["losses"]) == len(losses) == 2 * -(-n_train // 6)
    # float64, sums in another order: agreement to ~1e-15; 1e-10 is the bound.
    torch.testing.assert_close(
        torch.tensor(distributed["losses"], dtype=torch.float64), losses, rtol=1e-10, atol=0
    )
    torch.testing.assert_close(distributed["weights"], weights, rtol=0, atol=1e-10)
    assert (weights[-1] - weights[0]).abs().max() > 1e-4  # it did train

    # The epoch logs (training and sharded validation losses and metrics) agree too.
    rows1, rows2 = read_csv(tmp_path / "r1" / "log.csv"), read_csv(tmp_path / "r2" / "log.csv")
    assert len(rows1) == len(rows2) == 2
    for a, b in zip(rows1, rows2):
        for key in a:
            if key != "time_s":
                assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-10, abs=1e-12), key
    m1 = torch.load(tmp_path / "r1" / "model.pt", weights_only=True)["state_dict"]
    m2 = torch.load(tmp_path / "r2" / "model.pt", weights_only=True)["state_dict"]
    for key in m1:
        torch.testing.assert_close(m2[key], m1[key], rtol=0, atol=1e-10)


def test_two_rank_run_killed_mid_epoch_resumes_on_one_rank(tmp_path):
    data = tmp_path / "crystals.xyz"
    ase.io.write(data, toy_nacl_structures(16, seed=3), format="extxyz")
    epochs = 8
    killed = tmp_path / "killed"
    args = [
        f"data.train={data}",
        f"epochs={epochs}",
        *COMMON,
        "loss.charges=0",
        "loss.dipole=0",
    ]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hybridpot.cli",
            "train",
            str(_yaml(tmp_path)),
            "--devices",
            "2",
            "--quiet",
            *args,
            f"output_dir={killed}",
            "batch_size=2",
            "eval_batch_size=2",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    checkpoint = killed / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if checkpoint.is_file() and load_checkpoint(checkpoint)["epoch"] >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-3000:]
    time.sleep(0.3)  # into the next epoch
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stopped = load_checkpoint(checkpoint)
    assert 2 <= stopped["epoch"] < epochs and stopped["world_size"] == 2

    # Resume on one rank with the same global batch (2 ranks x 2 = 1 rank x 4).
    one_rank = ["batch_size=4", "eval_batch_size=4"]
    Trainer(load_config(None, [*args, f"output_dir={killed}", *one_rank]), resume=True).fit()
    whole = load_config(None, [*args, f"output_dir={tmp_path / 'whole'}", *one_rank])
    Trainer(whole).fit()
    a = load_checkpoint(killed / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert a["epoch"] == b["epoch"] == epochs
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-10)
    rows = read_csv(killed / "log.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))


def _yaml(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    return path


def test_short_range_model_with_unused_charge_readout(tmp_path):
    """Without a Coulomb term and a charge loss the charge readout gets no gradient: DDP
    must still step (find_unused_parameters), and match one process with twice the batch."""
    data = tmp_path / "crystals.xyz"
    ase.io.write(data, toy_nacl_structures(10, seed=4), format="extxyz")
    config = _yaml(tmp_path)
    args = [f"data.train={data}", "epochs=1", *COMMON, "loss.charges=0", "loss.dipole=0"]
    args.append("model.coulomb=false")
    two = subprocess.run(
        [sys.executable, "-m", "hybridpot.cli", "train", str(config), "--devices", "2",
         *args, f"output_dir={tmp_path / 'two'}", "batch_size=2", "eval_batch_size=1"],
        env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    Trainer(
        load_config(None, [*args, f"output_dir={tmp_path / 'one'}", "batch_size=4",
                           "eval_batch_size=2"])
    ).fit()  # fmt: skip
    a = torch.load(tmp_path / "two" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "one" / "model.pt", weights_only=True)["state_dict"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-10)
