"""Safe file I/O: atomic writes (a crash never leaves a half-written file in place of a
good one) and weights-only loads (a file from a stranger cannot run code).

Everything hybridpot saves (models, checkpoints, logs, plots, predictions, datasets) goes
through a temporary file in the destination folder and ``os.replace``.
"""

from __future__ import annotations

import os
import pickle
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
        _sync_folder(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _sync_folder(folder: Path) -> None:
    """fsync the folder so the rename itself survives a power cut (POSIX; no-op elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike, names) -> list[Path]:
    """Delete temporary files that :func:`atomic_write` left behind for ``names``.

    A process killed with SIGKILL during a write cannot remove its temporary file
    (``.<name>.<random>.tmp``); the target itself is intact. Call this when no other
    process writes to ``folder``.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    removed = []
    for name in names:
        for stale in folder.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` atomically."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text.encode()))


def require_file(path, what: str, error: type[Exception] | None = None) -> Path:
    """``path`` as a Path, if it is an existing file (the one check of every input file).

    Args:
        path: a path.
        what: how to name it, e.g. ``"model file"`` or ``"config key 'data.train': file"``.
        error: exception class for both problems (e.g. a config error); default
            ValueError for a folder and FileNotFoundError for a missing file.

    Raises:
        ValueError (or ``error``): ``path`` is a folder.
        FileNotFoundError (or ``error``): nothing is at ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise (error or ValueError)(f"{what} {str(path)!r} is a folder, not a file")
    if not path.is_file():
        raise (error or FileNotFoundError)(f"{what} {str(path)!r} does not exist")
    return path


def load_weights_only(path: str | os.PathLike, what: str) -> object:
    """``torch.load(path, weights_only=True)`` with errors that say what went wrong.

    Args:
        path: the file.
        what: how to name it in messages, e.g. ``"model file"`` or ``"checkpoint"``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is a folder, or the file holds pickled Python objects
            (refused: loading them could run code), or it is truncated or not a torch
            file at all.
    """
    path = require_file(path, what)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error) or "GLOBAL" in str(error):
            raise ValueError(
                f"refusing to load {what} {str(path)!r}: it contains pickled Python objects, "
                f"not only tensors and plain data, and loading it could run arbitrary code"
            ) from None
        raise ValueError(f"{what} {str(path)!r} is not readable: {error}") from None
    except Exception as error:  # truncated or foreign file
        raise ValueError(f"{what} {str(path)!r} is not readable: {error}") from None
