"""Uncertainty-triggered stop and flagging in ASE molecular dynamics."""

import pytest
from ase import units
from ase.md.verlet import VelocityVerlet

from hybridpot.calculator import HybridCalculator
from hybridpot.testing.structures import random_structure
from hybridpot.uncertainty.md import UncertaintyExceeded, UncertaintyGuard


def dynamics(model):
    atoms = random_structure(21, n=8, scale=6.0)
    atoms.calc = HybridCalculator(model)
    return atoms, VelocityVerlet(atoms, 0.5 * units.fs)


def test_guard_stops_md_past_the_threshold(fitted):
    atoms, dyn = dynamics(fitted)
    sigma = float(atoms.calc.get_property("forces_uncertainty", atoms).max())
    guard = UncertaintyGuard(atoms, threshold=0.5 * sigma)
    dyn.attach(guard, interval=1)
    with pytest.raises(UncertaintyExceeded, match="passed the threshold") as stop:
        dyn.run(5)
    assert stop.value.step == 0 and stop.value.sigma > guard.threshold


def test_guard_flags_without_stopping(fitted):
    atoms, dyn = dynamics(fitted)
    sigma = float(atoms.calc.get_property("forces_uncertainty", atoms).max())
    low = UncertaintyGuard(atoms, threshold=0.5 * sigma, action="flag")
    high = UncertaintyGuard(atoms, threshold=100 * sigma, action="flag")
    dyn.attach(low, interval=1)
    dyn.attach(high, interval=1)
    dyn.run(3)
    assert len(low.flagged) == len(low.sigmas) == 4 and not high.flagged


@pytest.mark.parametrize(
    "threshold, action, error",
    [(0.0, "stop", ValueError), ("1", "stop", TypeError), (1.0, "pause", ValueError)],
)
def test_guard_arguments_are_checked(fitted, threshold, action, error):
    atoms, _ = dynamics(fitted)
    with pytest.raises(error):
        UncertaintyGuard(atoms, threshold, action)
