"""Calibration metrics on synthetic errors with known scales."""

import numpy as np
import pytest

from hybridpot.uncertainty import (
    calibration_factor,
    calibration_metrics,
    miscalibration_area,
    plot_calibration,
    spearman,
)


def synthetic(scale, n=20000, seed=0):
    """Errors drawn from N(0, (scale * sigma)^2) with sigma spread over two decades."""
    rng = np.random.default_rng(seed)
    sigma = 10 ** rng.uniform(-2, 0, n)
    return rng.normal(0.0, scale * sigma), sigma


@pytest.mark.parametrize("scale", [0.1, 1.0, 7.5])
def test_calibration_factor_recovers_a_known_scale(scale):
    errors, sigma = synthetic(scale)
    # Standard error of alpha^2 = mean(z^2) with z ~ N(0, scale^2): sqrt(2/n) ~ 1 %.
    assert calibration_factor(errors, sigma) == pytest.approx(scale, rel=0.02)
    # Once rescaled, the errors are calibrated: small area, factor 1.
    alpha = calibration_factor(errors, sigma)
    assert miscalibration_area(errors, alpha * sigma) < 0.01
    assert calibration_factor(errors, alpha * sigma) == pytest.approx(1.0, rel=1e-12)


def test_miscalibration_area_detects_over_and_under_confidence():
    errors, sigma = synthetic(1.0)
    assert miscalibration_area(errors, sigma) < 0.01
    assert miscalibration_area(errors, sigma / 3) > 0.2  # overconfident
    assert miscalibration_area(errors, 3 * sigma) > 0.2  # underconfident


def test_spearman_ranks_errors_by_sigma():
    errors, sigma = synthetic(1.0)
    informative = spearman(errors, sigma)
    shuffled = spearman(errors, np.random.default_rng(1).permutation(sigma))
    assert informative > 0.5 and abs(shuffled) < 0.05


def test_metrics_summary_and_plot(tmp_path):
    errors, sigma = synthetic(2.0, n=500)
    summary = calibration_metrics(errors, sigma)
    assert summary["count"] == 500 and summary["alpha"] == pytest.approx(2.0, rel=0.15)
    path = plot_calibration({"forces": (errors, sigma)}, tmp_path / "c.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "errors, sigmas, message",
    [
        ([1.0, 2.0], [1.0], "same number of values"),
        ([], [], "empty"),
        ([1.0, np.nan], [1.0, 1.0], "non-finite"),
        ([1.0, 2.0], [1.0, 0.0], "sigmas must be finite and > 0"),
    ],
)
def test_bad_input_is_named(errors, sigmas, message):
    with pytest.raises(ValueError, match=message):
        calibration_factor(errors, sigmas)
