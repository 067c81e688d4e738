"""The hybrid model: network + electrostatics, derivatives, config and save/load."""

from .build import build_model
from .config import ModelConfig
from .hybrid import HybridModel
from .io import load_model, save_model

__all__ = ["HybridModel", "ModelConfig", "build_model", "load_model", "save_model"]
