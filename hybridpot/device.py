"""The one check of a user's ``device`` argument (calculator, training config, CLI).

``torch.device("gpu")`` fails with a list of twenty internal device types, and
``torch.device("cuda")`` succeeds on a machine without CUDA, only for the first tensor
moved there to fail deep inside the run. :func:`resolve_device` turns both into a
ValueError that names the argument, the accepted values and what is available.
"""

from __future__ import annotations

import re

import torch

#: What a user may write: ``cpu``, ``cuda`` (the current GPU), ``cuda:N``, ``mps``.
ACCEPTED = ("cpu", "cuda", "cuda:N", "mps")

_PATTERN = re.compile(r"^(cpu|mps|cuda)(?::(\d+))?$")


def resolve_device(device, name: str = "device") -> torch.device:
    """``device`` as a :class:`torch.device` that exists on this machine.

    Args:
        device: a string such as ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"``, or a
            :class:`torch.device`.
        name: how to name the argument in messages (e.g. ``"config key 'device'"``).

    Raises:
        TypeError: ``device`` is neither a string nor a torch.device.
        ValueError: an unknown device (e.g. ``"gpu"``), or a CUDA/MPS device that this
            machine does not have; the message names ``name`` and the accepted values.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(
            f"{name} must be a string such as 'cpu' or 'cuda', got {type(device).__name__}"
        )
    match = _PATTERN.match(device.strip())
    if match is None:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(a) for a in ACCEPTED)}, got {device!r}"
        )
    kind, index = match.group(1), match.group(2)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name} is {device!r} but CUDA is not available on this machine "
                f"(torch.cuda.is_available() is False); use 'cpu'"
            )
        count = torch.cuda.device_count()
        if index is not None and int(index) >= count:
            raise ValueError(
                f"{name} is {device!r} but this machine has {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1})"
            )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError(f"{name} is {device!r} but MPS is not available on this machine")
    if kind != "cuda" and index is not None:
        raise ValueError(f"{name} must be one of {', '.join(ACCEPTED)}, got {device!r}")
    return torch.device(device.strip())
