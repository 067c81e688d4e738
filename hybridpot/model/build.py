"""``build_model(config)``: the one way to make a hybrid model from a config dict."""

from __future__ import annotations

from .config import ModelConfig
from .hybrid import HybridModel


def build_model(config: dict) -> HybridModel:
    """Build a :class:`HybridModel` from a config dict.

    Args:
        config: needs ``"elements"`` (chemical symbols) and ``"cutoff"`` (Å); every other
            key is optional, with the defaults documented in :class:`ModelConfig`
            (the Coulomb term is on by default).

    Raises:
        TypeError, ValueError: naming the key with a wrong type or value, or an unknown key
            (with the closest known one).

    Returns:
        The model in float64 (cast with ``model.to(torch.float32)`` for speed).
    """
    import torch

    if not isinstance(config, dict):
        raise TypeError(f"model config must be a dict, got {type(config).__name__}")
    return HybridModel(ModelConfig.from_dict(dict(config))).to(torch.float64)
