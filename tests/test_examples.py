"""The examples run (quick modes) and print what they promise."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_madelung_example_reproduces_the_constants():
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "madelung.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    worst = float(done.stdout.strip().splitlines()[-1].split()[-1])
    assert worst < 1e-6
