"""Uncertainty-triggered safety in molecular dynamics.

Attach an :class:`UncertaintyGuard` to an ASE dynamics object driven by a
:class:`hybridpot.HybridCalculator` whose model has a fitted uncertainty. After every
step it reads the calculator's ``forces_uncertainty`` (computed with the forces at no
extra pass) and, when the largest per-atom force sigma passes ``threshold`` (eV/Å),
either stops the run (``action="stop"``: raises :class:`UncertaintyExceeded`) or records
the step (``action="flag"``: ``guard.flagged``).

    dyn = Langevin(atoms, ...)
    guard = UncertaintyGuard(atoms, threshold=0.5)
    dyn.attach(guard, interval=1)
    try:
        dyn.run(1000)
    except UncertaintyExceeded as stop:
        print("left the training data at step", stop.step)
"""

from __future__ import annotations

import math

import numpy as np

ACTIONS = ("stop", "flag")


class UncertaintyExceeded(RuntimeError):
    """The force uncertainty passed the guard's threshold (``step``, ``sigma`` in eV/Å)."""

    def __init__(self, step: int, sigma: float, threshold: float) -> None:
        super().__init__(
            f"force uncertainty {sigma:.4g} eV/Å passed the threshold {threshold:.4g} eV/Å "
            f"at step {step}"
        )
        self.step = step
        self.sigma = sigma


class UncertaintyGuard:
    """Stop (or flag) MD when the largest force sigma passes ``threshold``.

    Args:
        atoms: the simulated Atoms (its calculator must offer ``forces_uncertainty``).
        threshold: eV/Å, > 0.
        action: ``"stop"`` (raise :class:`UncertaintyExceeded`) or ``"flag"`` (record).

    Attributes:
        flagged: (step, largest sigma) of every step over the threshold.
        sigmas: the largest sigma of every call.
    """

    def __init__(self, atoms, threshold: float, action: str = "stop") -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a number (eV/Å), got {threshold!r}")
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold must be a finite number > 0 eV/Å, got {threshold!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        self.atoms = atoms
        self.threshold = float(threshold)
        self.action = action
        self.flagged: list[tuple[int, float]] = []
        self.sigmas: list[float] = []
        self.step = 0

    def __call__(self) -> None:
        sigma = float(np.max(self.atoms.calc.get_property("forces_uncertainty", self.atoms)))
        self.sigmas.append(sigma)
        step, self.step = self.step, self.step + 1
        if sigma > self.threshold:
            self.flagged.append((step, sigma))
            if self.action == "stop":
                raise UncertaintyExceeded(step, sigma, self.threshold)
