"""Regenerate the marked, generated section of a Markdown page (atomically).

The configuration reference (:mod:`hybridpot._docgen.train_config`) and the Python API reference
(:mod:`hybridpot._docgen.api`) each live between a begin and an end marker in a hand-written
page; this replaces only what lies between them.
"""

from __future__ import annotations

from pathlib import Path


def replace_section(path: str | Path, begin: str, end: str, body: str) -> bool:
    """Put ``body`` between the markers ``begin`` and ``end`` of the text file ``path``.

    Returns:
        True when the file changed (it is rewritten atomically only then).

    Raises:
        ValueError: the file lacks one of the markers.
    """
    path = Path(path)
    text = path.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{str(path)!r} lacks the markers {begin!r} and {end!r}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{body}{end}{tail}"
    if new != text:
        from ..fileio import atomic_write_text  # imports torch: only when writing

        atomic_write_text(path, new)
    return new != text
