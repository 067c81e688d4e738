"""Exponential moving average (EMA) of model weights.

    theta_ema <- d * theta_ema + (1 - d) * theta,   d = min(decay, (1 + n) / (10 + n))

after each optimiser step n. The warm-up factor (1 + n) / (10 + n) keeps the average
from remembering the random initial weights for long. The averaged weights are smoother
than the raw ones and usually validate better; they are the ones validated and exported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class ExponentialMovingAverage:
    """EMA of the floating-point parameters of ``model`` (buffers are copied as they are).

    Args:
        model: the model whose parameters are averaged.
        decay: d in [0, 1); 0 means the average is the current weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {
            name: p.detach().clone()
            for name, p in model.named_parameters()
            if p.is_floating_point()
        }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold the current parameters of ``model`` into the average."""
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, p in model.named_parameters():
            if name in self.shadow:
                self.shadow[name].mul_(decay).add_(p.detach(), alpha=1 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite the parameters of ``model`` with the average."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name])

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Temporarily put the averaged weights into ``model`` (restored on exit)."""
        backup = {name: p.detach().clone() for name, p in model.named_parameters()}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(backup[name])

    def state_dict(self) -> dict:
        """Tensors and numbers only (safe for ``weights_only`` loading)."""
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": {k: v.clone() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output (names must match this model's parameters)."""
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model: parameters {sorted(missing)}")
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)
