"""Training checkpoints and random-number-generator states.

A checkpoint is a ``torch.save``d dict of tensors and plain containers (numbers,
strings, lists, dicts) only, so ``torch.load(..., weights_only=True)`` reads it and a
checkpoint from a stranger cannot run code. Every file is written to a temporary name in
the same folder and renamed over the target (``os.replace`` is atomic), so a crash never
leaves a half-written checkpoint in place of a good one.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..fileio import (  # noqa: F401 (atomic_write*, re-exported)
    atomic_save,
    atomic_write,
    atomic_write_text,
    load_weights_only,
)

#: Version of the checkpoint dict; bump it and add an upgrade to ``_UPGRADES`` when the
#: layout or the meaning of an entry changes. Checkpoints of every version are kept as
#: test fixtures (``tests/fixtures/``).
#:
#: - 1: the first layout.
#: - 2: ``model_config["atomic_energies"]`` lists every element or none (version 1 read a
#:   missing element as 0; the upgrade writes the zeros out).
#: - 3: ``model_config["coulomb_split"]``; earlier runs kept every Coulomb pair (the
#:   upgrade writes ``"none"``).
CHECKPOINT_VERSION = 3


def _upgrade_1_to_2(state: dict) -> dict:
    from ..model.io import complete_atomic_energies

    state = {**state, "checkpoint_version": 2}
    if isinstance(state.get("model_config"), dict):
        state["model_config"] = complete_atomic_energies(state["model_config"])
    return state


def _upgrade_2_to_3(state: dict) -> dict:
    from ..model.io import keep_every_coulomb_pair

    state = {**state, "checkpoint_version": 3}
    if isinstance(state.get("model_config"), dict):
        state["model_config"] = keep_every_coulomb_pair(state["model_config"])
    return state


# from_version -> function(checkpoint dict) -> checkpoint dict of version from_version + 1
_UPGRADES = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}


# ----------------------------------------------------------------------------- RNG states
def rng_state() -> dict[str, torch.Tensor]:
    """The global torch, numpy and Python random states, as tensors only."""
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global state)
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_key": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor([np_state[4]], dtype=torch.float64),
        "python": torch.tensor([py_version, *py_internal], dtype=torch.int64),
        "python_gauss": torch.tensor(
            [float("nan") if py_gauss is None else py_gauss], dtype=torch.float64
        ),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    pos, has_gauss = (int(x) for x in state["numpy_pos"])
    np.random.set_state(  # noqa: NPY002 (the legacy global state)
        (
            "MT19937",
            state["numpy_key"].numpy().astype(np.uint32),
            pos,
            has_gauss,
            float(state["numpy_gauss"][0]),
        )
    )
    python = [int(x) for x in state["python"]]
    gauss = float(state["python_gauss"][0])
    random.setstate((python[0], tuple(python[1:]), None if np.isnan(gauss) else gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# ----------------------------------------------------------------------------- checkpoints
# Config entries that may change between an interrupted run and its resumption (the run
# stays exact except for a device change, which changes floating-point reduction order).
RESUMABLE_CHANGES = {
    "epochs",
    "early_stopping_patience",
    "max_time",
    "quiet",
    "plots",
    "device",
    "output_dir",
    "data.cache_dir",
    "uncertainty",
    "data.num_workers",
}


def _flatten(values: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the model section is compared as a whole)."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "model":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_entries(saved: dict, current: dict) -> list[str]:
    """Dotted keys whose values differ between two config dicts (sorted)."""
    saved, current = _flatten(saved), _flatten(current)
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write a training checkpoint (a dict of tensors and plain data) atomically."""
    atomic_save({"checkpoint_version": CHECKPOINT_VERSION, **state}, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``: safe).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file holds pickled objects, is unreadable or is not a checkpoint.
    """
    state = load_weights_only(path, "checkpoint")
    if isinstance(state, dict) and "format_version" in state and "state_dict" in state:
        raise ValueError(f"{str(path)!r} is a model file, not a training checkpoint")
    if not isinstance(state, dict) or "checkpoint_version" not in state:
        raise ValueError(f"{str(path)!r} is not a hybridpot training checkpoint")
    version = state["checkpoint_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"checkpoint {str(path)!r} has an invalid version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise ValueError(
            f"checkpoint {str(path)!r} has version {version}, newer than "
            f"this hybridpot understands ({CHECKPOINT_VERSION})"
        )
    while version < CHECKPOINT_VERSION:
        state = _UPGRADES[version](state)
        version += 1
    return state
