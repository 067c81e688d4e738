"""PNG learning curves and parity plots (matplotlib, Agg canvas: no display needed).

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas directly, so
importing this module never changes pyplot's global backend.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .checkpoint import atomic_write
from .metrics import MODEL_UNITS, UNITS
from .targets import PROPERTIES


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=120))
    return Path(path)


def plot_learning_curves(history: list[dict], path: str | os.PathLike) -> Path:
    """Training/validation loss and validation RMSE per property against epoch.

    Args:
        history: one dict per epoch with ``epoch``, ``train_loss``, optional ``val_loss``
            and ``val_<property>_rmse`` entries (the trainer's CSV rows).
        path: PNG file to write.
    """
    if not history:
        raise ValueError("history must hold at least one epoch, got an empty list")
    epochs = np.array([row["epoch"] for row in history])
    props = [p for p in PROPERTIES if any(f"val_{p}_rmse" in row for row in history)]
    fig = Figure(figsize=(4.5 * (1 + len(props)), 3.6), layout="constrained")
    axes = fig.subplots(1, 1 + len(props), squeeze=False)[0]

    def column(key: str) -> np.ndarray:
        return np.array([row.get(key, np.nan) for row in history], dtype=float)

    ax = axes[0]
    ax.plot(epochs, column("train_loss"), label="train")
    if any("val_loss" in row for row in history):
        ax.plot(epochs, column("val_loss"), label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    for ax, name in zip(axes[1:], props, strict=True):
        ax.plot(epochs, column(f"val_{name}_rmse"), label="RMSE")
        ax.plot(epochs, column(f"val_{name}_mae"), label="MAE")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{name} error ({UNITS[name][0]})")
        ax.legend()
    return _save(fig, path)


def plot_parity(
    reference: np.ndarray, prediction: np.ndarray, name: str, path: str | os.PathLike
) -> Path:
    """Prediction against reference for property ``name`` (values in the model's units:
    eV/atom, eV/Å, eV/Å³, e, e·Å), with the diagonal and the MAE/RMSE in the title."""
    reference = np.asarray(reference, dtype=float).ravel()
    prediction = np.asarray(prediction, dtype=float).ravel()
    if reference.shape != prediction.shape or reference.size == 0:
        raise ValueError(
            f"reference and prediction must be non-empty and of equal size, got "
            f"{reference.shape} and {prediction.shape}"
        )
    unit, factor = UNITS[name]
    base_unit = MODEL_UNITS[name]
    error = prediction - reference
    mae = factor * np.abs(error).mean()
    rmse = factor * np.sqrt((error**2).mean())
    fig = Figure(figsize=(4.2, 4.0), layout="constrained")
    ax = fig.subplots()
    ax.scatter(reference, prediction, s=6, alpha=0.6)
    low = min(reference.min(), prediction.min())
    high = max(reference.max(), prediction.max())
    ax.plot([low, high], [low, high], color="k", lw=0.8)
    ax.set_xlabel(f"reference {name} ({base_unit})")
    ax.set_ylabel(f"predicted {name} ({base_unit})")
    ax.set_title(f"{name}: MAE {mae:.3g}, RMSE {rmse:.3g} {unit}", fontsize=9)
    return _save(fig, path)
