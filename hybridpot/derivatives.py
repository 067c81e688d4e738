"""Forces and stress from one autograd pass over an energy.

The stress is the derivative with respect to a homogeneous strain ε applied to the
positions AND the cell *before* anything else (edge vectors, the Ewald mesh) is computed:

    r' = r (1 + ε),   cell' = cell (1 + ε),   stress = (1/V) dE/dε   (ASE sign)

Straining the cell as well as the positions is what makes the long-range term's stress
exact: the reciprocal lattice, the mesh and the neutralising background all depend on the
cell. (Differentiating only through positions misses those terms.)
"""

from typing import NamedTuple

import torch

from .data.segments import determinant3, per_structure_matmul

#: Voigt order used by ASE: xx, yy, zz, yz, xz, xy. The only place this order is spelled:
#: :func:`voigt` and :func:`voigt_to_matrix` use it, and everything else calls them.
VOIGT_INDICES = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
_VOIGT_ROWS = [a for a, _ in VOIGT_INDICES]
_VOIGT_COLS = [b for _, b in VOIGT_INDICES]
# Index of each of the 3 x 3 entries in the Voigt vector (symmetric: (a, b) and (b, a)).
_MATRIX_FROM_VOIGT = [[0] * 3 for _ in range(3)]
for _v, (_a, _b) in enumerate(VOIGT_INDICES):
    _MATRIX_FROM_VOIGT[_a][_b] = _MATRIX_FROM_VOIGT[_b][_a] = _v


def apply_strain(
    positions: torch.Tensor, cell: torch.Tensor, batch: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Attach a zero strain (B, 3, 3) that positions and cell depend on.

    Args:
        positions: (N, 3) Å.
        cell: (B, 3, 3) Å.
        batch: (N,) int64 structure index.

    Returns:
        ``(strained_positions, strained_cell, strain)``; ``strain`` is a zero leaf
        tensor with ``requires_grad`` set, and the ``positions`` input gets
        ``requires_grad`` too (for forces). Both outputs equal the inputs in value.
    """
    strain = torch.zeros_like(cell, requires_grad=True)
    if not positions.requires_grad:
        positions.requires_grad_(True)
    # Symmetrise so that dE/dε is the symmetric stress even for non-symmetric gradients.
    sym = 0.5 * (strain + strain.transpose(-1, -2))
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    # Per-structure product without gathering the strain per atom (whose backward would
    # accumulate N contributions into the 9 B strain entries: see data/segments.py).
    strained_positions = per_structure_matmul(positions, eye + sym, batch)
    strained_cell = torch.einsum("bki,bij->bkj", cell, eye + sym)
    return strained_positions, strained_cell, strain


def has_dipole(pbc):
    """Whether a structure's dipole sum_i q_i r_i is defined: only without periodic images.

    With any periodic axis the sum depends on which image each atom is written in, so the
    model, the calculator, the evaluation and the training targets all leave it out (or
    zero it) where this is False. The one place this rule lives.

    Args:
        pbc: (..., 3) bool, a torch tensor or a NumPy array (e.g. ``atoms.pbc``).

    Returns:
        (...) bool of the same kind: True where no axis is periodic.
    """
    return ~pbc.any(-1)


def has_volume(pbc):
    """Whether a structure has a volume, and so a stress (1/V) dE/dε: only when fully periodic.

    The model returns zero stress elsewhere, ``coulomb()``, the evaluation and the data
    generators leave it out; the ASE calculator's in-plane slab stress is its own,
    documented extension. The one place this rule lives.

    Args:
        pbc: (..., 3) bool, a torch tensor or a NumPy array (e.g. ``atoms.pbc``).

    Returns:
        (...) bool of the same kind: True where every axis is periodic.
    """
    return pbc.all(-1)


def cell_volume(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """(B,) Å³, |det cell| where :func:`has_volume`, 0 for the others."""
    volume = determinant3(cell).abs()
    return torch.where(has_volume(pbc), volume, torch.zeros_like(volume))


class EnergyDerivatives(NamedTuple):
    """What :func:`energy_derivatives` returns, all from one backward pass.

    Fields:
        forces: (N, 3) eV/Å, -dE/dr.
        virial: (B, 3, 3) eV, -dE/dε; None without a strain.
        stress: (B, 3, 3) eV/Å³, (1/V) dE/dε (zeros where V = 0); None without a strain.
        extra: dE/dx for each of the ``extra`` inputs, in order (zeros where the energy
            does not depend on x).
    """

    forces: torch.Tensor
    virial: torch.Tensor | None
    stress: torch.Tensor | None
    extra: tuple[torch.Tensor, ...]


def energy_derivatives(
    energy: torch.Tensor,
    positions: torch.Tensor,
    strain: torch.Tensor | None = None,
    volume: torch.Tensor | None = None,
    *,
    extra: tuple[torch.Tensor, ...] = (),
    create_graph: bool = False,
) -> EnergyDerivatives:
    """Forces, virial, stress and any extra gradients from ONE backward pass over sum(E).

    The one place where the model and :func:`hybridpot.electrostatics.coulomb` turn an
    energy into its derivatives; the strain comes from :func:`apply_strain`, applied
    before the energy was computed.

    Args:
        energy: (B,) eV, or any shape: it is summed (structures are independent, so the
            gradient of the sum is each structure's gradient).
        positions: (N, 3) Å, the unstrained leaf that ``energy`` depends on.
        strain: (B, 3, 3) from :func:`apply_strain`, or None to skip virial and stress.
        volume: (B,) Å³ (see :func:`cell_volume`), needed with ``strain``; the stress of
            a structure with volume 0 is returned as zeros, its virial is still given.
        extra: more tensors to differentiate by in the same pass, e.g. the charges
            (dE/dq_i: the electrostatic potential at atom i, eV/e).
        create_graph: keep the graph of the derivatives (for training on forces).

    Returns:
        :class:`EnergyDerivatives` ``(forces, virial, stress, extra)``; a gradient that
        does not exist (the energy is independent of that input) counts as zero.
    """
    if strain is not None and volume is None:
        raise ValueError("volume (B,) Å³ is needed to turn the strain derivative into stress")
    inputs = [positions, *([] if strain is None else [strain]), *extra]
    grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]
    forces = -grads[0]
    extra_grads = tuple(grads[1 if strain is None else 2 :])
    if strain is None:
        return EnergyDerivatives(forces, None, None, extra_grads)
    # virial = -dE/dε, stress = (1/V) dE/dε (ASE sign); zero stress where V = 0.
    de_dstrain = grads[1]
    safe_volume = torch.where(volume > 0, volume, torch.ones_like(volume))
    stress = torch.where((volume > 0)[:, None, None], de_dstrain / safe_volume[:, None, None], 0.0)
    return EnergyDerivatives(forces, -de_dstrain, stress, extra_grads)


def voigt(tensor):
    """(..., 3, 3) -> (..., 6) in ASE's Voigt order xx yy zz yz xz xy.

    Works on torch tensors (differentiable) and NumPy arrays alike; the upper triangle
    is read, so pass a symmetric tensor.
    """
    return tensor[..., _VOIGT_ROWS, _VOIGT_COLS]


def voigt_to_matrix(vector):
    """(..., 6) in ASE's Voigt order -> the symmetric (..., 3, 3); torch or NumPy."""
    return vector[..., _MATRIX_FROM_VOIGT]
