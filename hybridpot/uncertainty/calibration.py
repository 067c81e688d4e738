"""Calibration of predicted uncertainties: scale factor, miscalibration area, ranking.

All functions take matching arrays of signed errors e (prediction - reference) and
predicted standard deviations s > 0, read as a Gaussian predictive distribution
e ~ N(0, s^2) per value.

- :func:`calibration_factor`: the alpha that maximises the Gaussian likelihood of the
  errors under alpha * s: alpha^2 = mean(e^2 / s^2).
- :func:`miscalibration_area`: the mean over confidence levels p in (0, 1) of
  |observed fraction of |e| <= z_p s - p| with z_p the two-sided Gaussian quantile
  (0: perfectly calibrated; 0.5 at worst).
- :func:`spearman`: the rank correlation of |e| and s (does the uncertainty rank the
  errors?).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import special, stats


def _check(errors, sigmas) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(errors, dtype=float).ravel()
    s = np.asarray(sigmas, dtype=float).ravel()
    if e.shape != s.shape:
        raise ValueError(
            f"errors and sigmas must have the same number of values, got {e.size} and {s.size}"
        )
    if e.size == 0:
        raise ValueError("errors and sigmas are empty: nothing to calibrate")
    if not np.all(np.isfinite(e)):
        raise ValueError("errors contain non-finite values")
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(
            f"sigmas must be finite and > 0, got min {np.nanmin(s)!r} "
            f"({int(np.sum(~(s > 0)))} values not > 0)"
        )
    return e, s


def calibration_factor(errors, sigmas) -> float:
    """alpha = sqrt(mean(e^2 / s^2)): the maximum-likelihood scale of ``sigmas``.

    Args:
        errors: (M,) signed errors.
        sigmas: (M,) predicted standard deviations (> 0), same unit as ``errors``.

    Returns:
        alpha (> 0 unless every error is 0), unitless; alpha * sigmas is calibrated.
    """
    e, s = _check(errors, sigmas)
    return float(np.sqrt(np.mean((e / s) ** 2)))


def gaussian_nll(errors, sigmas) -> float:
    """Mean Gaussian negative log-likelihood of ``errors`` under N(0, sigmas^2) (nats)."""
    e, s = _check(errors, sigmas)
    return float(np.mean(0.5 * np.log(2 * np.pi * s**2) + 0.5 * (e / s) ** 2))


def calibration_curve(errors, sigmas, num: int = 99) -> tuple[np.ndarray, np.ndarray]:
    """Expected and observed coverage: for p in (0, 1), the fraction of values with
    |e| <= z_p s, z_p = sqrt(2) erfinv(p) (two-sided Gaussian interval).

    Returns:
        (expected p (num,), observed fraction (num,)).
    """
    e, s = _check(errors, sigmas)
    expected = np.linspace(0.0, 1.0, num + 2)[1:-1]
    z = np.sqrt(2.0) * special.erfinv(expected)
    ratio = np.abs(e) / s
    observed = np.mean(ratio[None, :] <= z[:, None], axis=1)
    return expected, observed


def miscalibration_area(errors, sigmas, num: int = 99) -> float:
    """Mean |observed - expected| coverage over ``num`` confidence levels (0 = calibrated)."""
    expected, observed = calibration_curve(errors, sigmas, num)
    return float(np.mean(np.abs(observed - expected)))


def spearman(errors, sigmas) -> float:
    """Spearman rank correlation of |errors| and ``sigmas`` (1: the uncertainty ranks the
    errors perfectly; ~0: no relation)."""
    e, s = _check(errors, sigmas)
    if e.size < 3:
        raise ValueError(f"Spearman correlation needs at least 3 values, got {e.size}")
    return float(stats.spearmanr(np.abs(e), s).statistic)


def calibration_metrics(errors, sigmas) -> dict[str, float]:
    """``{"spearman", "miscalibration_area", "alpha", "rmse", "mean_sigma", "count"}``:
    the calibration summary of one property (``alpha`` the factor that would calibrate it
    further; 1 when it is calibrated)."""
    e, s = _check(errors, sigmas)
    return {
        "spearman": spearman(e, s),
        "miscalibration_area": miscalibration_area(e, s),
        "alpha": calibration_factor(e, s),
        "rmse": float(np.sqrt(np.mean(e**2))),
        "mean_sigma": float(np.sqrt(np.mean(s**2))),
        "count": int(e.size),
    }


def plot_calibration(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike
) -> Path:
    """Write a calibration plot PNG (atomically): one panel per property with the
    observed against expected coverage (left) and |error| against sigma (right).

    Args:
        curves: property name -> (errors (M,), sigmas (M,)) in the property's unit.
        path: destination PNG.
    """
    from matplotlib.figure import Figure

    from ..train.plots import _save

    if not curves:
        raise ValueError("plot_calibration needs at least one property")
    fig = Figure(figsize=(8, 3.2 * len(curves)))
    for row, (name, (errors, sigmas)) in enumerate(curves.items()):
        e, s = _check(errors, sigmas)
        expected, observed = calibration_curve(e, s)
        ax = fig.add_subplot(len(curves), 2, 2 * row + 1)
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
        ax.plot(expected, observed, lw=2, label=f"area {miscalibration_area(e, s):.3f}")
        ax.set_xlabel("expected coverage")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"{name}: calibration")
        ax.legend(loc="upper left")
        ax = fig.add_subplot(len(curves), 2, 2 * row + 2)
        ax.loglog(s, np.abs(e) + 1e-12, ".", ms=2, alpha=0.5)
        lims = [min(s.min(), 1e-12 + np.abs(e).min()), max(s.max(), np.abs(e).max())]
        ax.plot(lims, lims, "k--", lw=1)
        ax.set_xlabel("predicted sigma")
        ax.set_ylabel("|error|")
        ax.set_title(f"{name}: Spearman {spearman(e, s):.2f}")
    fig.tight_layout()
    return _save(fig, path)
