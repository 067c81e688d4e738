"""The per-epoch CSV log and JSON outputs of a training run."""

from __future__ import annotations

import csv
import io
import json
import math
import os

from .checkpoint import atomic_write_text


def history_columns(history: list[dict]) -> list[str]:
    """Column names of ``history`` rows, in order of first appearance."""
    columns: list[str] = []
    for row in history:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns


def write_csv(history: list[dict], path: str | os.PathLike) -> None:
    """Write one row per epoch (missing entries empty), atomically.

    The whole file is rewritten from ``history`` each epoch, so after a crash and a
    resume it holds exactly the epochs of the checkpoint.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=history_columns(history), lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a CSV log as dicts of floats (ints for ``epoch``; empty cells left out)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            parsed = {}
            for key, value in row.items():
                if value == "":
                    continue
                parsed[key] = int(value) if key == "epoch" else float(value)
            rows.append(parsed)
    return rows


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as indented JSON atomically (non-finite floats become null)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    atomic_write_text(path, json.dumps(clean(data), indent=2) + "\n")
