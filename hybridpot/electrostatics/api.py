"""``coulomb(atoms, charges)``: energy, forces, stress and potential for fixed charges.

One backward pass gives all three derivatives: the strain is applied to positions AND
cell before anything is computed (``hybridpot.derivatives.apply_strain``), so the stress
includes the reciprocal-space and background terms exactly, and the charges are a leaf
so that dE/dq_i (the electrostatic potential at atom i) comes with the forces.
"""

from __future__ import annotations

import ase
import numpy as np
import torch

from ..derivatives import apply_strain, cell_volume, energy_derivatives, has_volume, voigt
from .module import Electrostatics


def _charges_array(charges, n: int) -> np.ndarray:
    if isinstance(charges, torch.Tensor):
        charges = charges.detach().cpu().numpy()
    array = np.asarray(charges)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(f"charges must be an array of real numbers (e), got dtype {array.dtype}")
    if array.shape != (n,):
        raise ValueError(f"charges must have shape (N,) = ({n},) for {n} atoms, got {array.shape}")
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array))[0])
        raise ValueError(f"charges must be finite, got {array[bad]} for atom {bad}")
    return array.astype(np.float64)


def coulomb(
    atoms: ase.Atoms,
    charges,
    *,
    sigma_q: float = 0.0,
    method: str = "auto",
    accuracy: float = 1e-5,
    dtype: torch.dtype = torch.float64,
    device="cpu",
    **overrides,
) -> dict:
    """Coulomb energy and its derivatives for fixed per-atom charges.

    Args:
        atoms: ``ase.Atoms``; ``atoms.pbc`` picks the method (all periodic: Ewald/PME;
            exactly one non-periodic axis orthogonal to the others: slab; none: direct).
        charges: (N,) e, any total (a periodic cell with a net charge gets the
            neutralising background, a slab the charged-slab terms).
        sigma_q: Gaussian charge width (Å), 0 for point charges.
        method: ``"auto"``, ``"pme"``, ``"ewald"``, ``"p3m"`` or ``"direct"``.
        accuracy: target relative RMS error of the forces, in (0, 1).
        dtype: ``torch.float64`` or ``torch.float32``.
        device: torch device.
        **overrides: explicit numerical parameters (see :class:`Electrostatics`).

    Returns:
        dict of floats / float64 NumPy arrays: ``energy`` (eV), ``forces`` (N, 3) eV/Å,
        ``potential`` (N,) eV/e = dE/dq_i, and ``stress`` (6,) eV/Å³ in Voigt order
        xx yy zz yz xz xy with ASE's sign (stress = (1/V) dE/dstrain) for fully periodic
        cells only: the stress of a slab or a molecule is not defined (no volume), and
        the key is absent for them.

    Raises:
        TypeError, ValueError: bad input, with a message naming the argument.
    """
    if not isinstance(atoms, ase.Atoms):
        raise TypeError(f"atoms must be an ase.Atoms, got {type(atoms).__name__}")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    n = len(atoms)
    q = _charges_array(charges, n)
    model = Electrostatics(sigma_q=sigma_q, method=method, accuracy=accuracy, **overrides)
    pbc_flags = [bool(p) for p in atoms.pbc]
    periodic = bool(has_volume(atoms.pbc))

    positions = torch.tensor(atoms.positions, dtype=dtype, device=device)
    cell = torch.tensor(np.asarray(atoms.cell), dtype=dtype, device=device)[None]
    pbc = torch.tensor([pbc_flags], dtype=torch.bool, device=device)
    charges_t = torch.tensor(q, dtype=dtype, device=device, requires_grad=True)
    batch = torch.zeros(n, dtype=torch.int64, device=device)
    positions.requires_grad_(True)
    strained_positions, strained_cell, strain = apply_strain(positions, cell, batch)

    energy = model(
        strained_positions, strained_cell, pbc, charges_t, batch, proportional_upstream=True
    ).sum()
    # Stress only for fully periodic cells (a slab or a molecule has no volume).
    forces, _, stress, (potential,) = energy_derivatives(
        energy,
        positions,
        strain if periodic else None,
        cell_volume(cell, pbc) if periodic else None,
        extra=(charges_t,),
    )

    def numpy(x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().double().numpy()

    result = {
        "energy": float(energy.detach()),
        "forces": numpy(forces),
        "potential": numpy(potential),
    }
    if periodic:
        result["stress"] = numpy(voigt(stress)[0])
    return result
