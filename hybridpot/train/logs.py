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


# ----------------------------------------------------------------------------- console log
class _Tee:
    """A text stream that writes to the console and, line by line, to a log file.

    Progress bars redraw a line with carriage returns; only the last state of such a line
    reaches the file (a bar that erases itself leaves nothing).
    """

    def __init__(self, console, log: ConsoleLog):
        self.console = console
        self.log = log
        self.pending = ""

    def write(self, text: str) -> int:
        self.console.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.log.add(line.rsplit("\r", 1)[-1].rstrip() if "\r" in line else line)
        return len(text)

    def flush(self) -> None:
        self.console.flush()

    def isatty(self) -> bool:
        return self.console.isatty()

    def __getattr__(self, name):  # encoding, fileno, ... of the console
        return getattr(self.console, name)


class ConsoleLog:
    """Copy everything printed to stdout and stderr into a log file (``with`` block).

    Lines printed before :meth:`start` are kept in memory and written when the file is
    chosen (so a run that fails before it knows its output folder touches no file).
    The file is opened for appending: a resumed run adds to it.
    """

    def __init__(self):
        self.file = None
        self.buffer: list[str] = []

    def add(self, line: str) -> None:
        if not line.strip():
            return
        if self.file is None:
            self.buffer.append(line)
        else:
            self.file.write(line + "\n")
            self.file.flush()

    def start(self, path: str | os.PathLike, header: str) -> None:
        """Open ``path`` for appending, write ``header`` and the lines printed so far."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in __exit__)
        self.file.write(header.rstrip("\n") + "\n")
        for line in self.buffer:
            self.file.write(line + "\n")
        self.buffer.clear()
        self.file.flush()

    def __enter__(self) -> ConsoleLog:
        import sys

        self._saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _Tee(sys.stdout, self), _Tee(sys.stderr, self)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        import sys

        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _Tee) and stream.pending:
                self.add(stream.pending.rsplit("\r", 1)[-1].rstrip())
        sys.stdout, sys.stderr = self._saved
        if self.file is not None:
            if error is not None:
                first = str(error).strip().splitlines()
                self.add(f"stopped: {type(error).__name__}: {first[0] if first else ''}")
            self.file.close()
            self.file = None
