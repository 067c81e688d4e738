"""Save and load models safely (DESIGN.md §5).

A model file is ``torch.save`` of a plain dict:

    {"format_version": int, "config": JSON str, "metadata": JSON str,
     "state_dict": {name: tensor}}

and is read with ``torch.load(..., weights_only=True)``, so a file from a stranger cannot
run code: anything but tensors and plain containers is refused. Writes are atomic
(temporary file in the same folder, then ``os.replace``), so a crash never leaves a
half-written file in place of a good one. Each older format version has one upgrade
function in ``_UPGRADES``.
"""

from __future__ import annotations

import json
import os

from ..atomic import atomic_save, load_weights_only
from .build import build_model
from .hybrid import HybridModel

FORMAT_VERSION = 1

# from_version -> function(payload dict) -> payload dict of version from_version + 1
_UPGRADES: dict = {}


def save_model(model: HybridModel, path: str | os.PathLike, metadata: dict | None = None) -> None:
    """Write ``model`` (weights + config + format version + optional metadata) to ``path``.

    Args:
        model: a :class:`HybridModel`.
        path: destination file (conventionally ``*.pt``); written atomically.
        metadata: JSON-serialisable provenance (training data, date, metrics, ...).
    """
    if not isinstance(model, HybridModel):
        raise TypeError(f"model must be a HybridModel, got {type(model).__name__}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config),
        "metadata": json.dumps(metadata or {}),
        "state_dict": state,
    }
    atomic_save(payload, path)


def read_model_file(path: str | os.PathLike) -> dict:
    """The raw, upgraded payload of a model file (safe: weights_only loading)."""
    payload = load_weights_only(path, "model file")
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ValueError(f"{str(path)!r} is not a hybridpot model file (no format_version)")
    version = int(payload["format_version"])
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format version {version}, newer than this hybridpot "
            f"understands ({FORMAT_VERSION}); upgrade hybridpot"
        )
    while version < FORMAT_VERSION:
        payload = _UPGRADES[version](payload)
        version += 1
    return payload


def load_model(path: str | os.PathLike) -> HybridModel:
    """Rebuild a model saved by :func:`save_model` (float64 weights are kept as saved)."""
    payload = read_model_file(path)
    model = build_model(json.loads(payload["config"]))
    state = payload["state_dict"]
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    if dtype is not None:
        model = model.to(dtype)
    model.load_state_dict(state)
    model.metadata = json.loads(payload.get("metadata", "{}"))
    return model
