"""Atomic file writes: a crash never leaves a half-written file in place of a good one.

Everything hybridpot saves (models, checkpoints, logs, plots, predictions, datasets) goes
through a temporary file in the destination folder and ``os.replace``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``.

    The folder is created when missing. On any error the temporary file is removed and
    ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` atomically."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode()))
