"""Fragments: groups of atoms (molecules, ions, a slab and its adsorbate) whose charges
must each sum to a given total.

A structure without fragments is one group (its total charge). With fragments, the charge
projection (and charge equilibration) holds every fragment's sum fixed separately, so no
charge can leak from one molecule to another however far apart they are.

Per structure, a fragment assignment is ``ids`` (N,) int64 with values 0..F-1, every value
used, and ``charges`` (F,) e. They are read from ``atoms.arrays["fragment"]`` and
``atoms.info["fragment_charges"]`` by default, or from a split index (the LODE dimer files:
atoms before ``info["indexB"]`` form fragment 0, the rest fragment 1, with charges
``info["chargeA"]``, ``info["chargeB"]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np

from .. import keys

#: e; fragment charges must add up to the structure's total charge within this.
CHARGE_SUM_TOLERANCE = 1e-8


def check_fragments(
    ids, charges, n_atoms: int, total_charge: float | None = None, *, where: str = "structure"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate one structure's fragment assignment.

    Args:
        ids: (N,) integers 0..F-1, the fragment of each atom; every fragment has an atom.
        charges: (F,) e, the total charge of each fragment.
        n_atoms: N.
        total_charge: e, the structure's total charge if it was given separately; the
            fragment charges must add up to it (within ``CHARGE_SUM_TOLERANCE``).
        where: how to name the structure in error messages.

    Returns:
        ``(ids (N,) int64, charges (F,) float64)``.

    Raises:
        ValueError: wrong shapes, non-integer or negative ids, an empty fragment, a charge
            per fragment missing or not finite, or charges that do not add up.
    """
    ids_array = np.asarray(ids)
    if ids_array.shape != (n_atoms,):
        raise ValueError(
            f"{where}: fragment ids must have one entry per atom, shape ({n_atoms},), "
            f"got {ids_array.shape}"
        )
    if ids_array.dtype.kind == "f":
        if not np.all(np.isfinite(ids_array)) or np.any(ids_array != np.round(ids_array)):
            raise ValueError(f"{where}: fragment ids must be integers, got {ids_array.tolist()}")
    elif ids_array.dtype.kind not in "iu":
        raise ValueError(f"{where}: fragment ids must be integers, got dtype {ids_array.dtype}")
    ids_array = ids_array.astype(np.int64)
    charges_array = np.asarray(charges, dtype=np.float64).reshape(-1)
    num_fragments = int(ids_array.max()) + 1 if n_atoms else 0
    if n_atoms and ids_array.min() < 0:
        raise ValueError(f"{where}: fragment ids must be >= 0, got {int(ids_array.min())}")
    if charges_array.shape != (num_fragments,):
        raise ValueError(
            f"{where}: fragment ids run 0..{num_fragments - 1}, so {num_fragments} fragment "
            f"charges are needed, got {charges_array.size}"
        )
    if not np.all(np.isfinite(charges_array)):
        raise ValueError(f"{where}: fragment charges must be finite, got {charges_array.tolist()}")
    empty = np.setdiff1d(np.arange(num_fragments), ids_array)
    if empty.size:
        raise ValueError(
            f"{where}: fragments {empty.tolist()} have no atoms (ids must use every value 0..F-1)"
        )
    if total_charge is not None and abs(charges_array.sum() - total_charge) > CHARGE_SUM_TOLERANCE:
        raise ValueError(
            f"{where}: fragment charges {charges_array.tolist()} add up to "
            f"{charges_array.sum():.10g} e, but the total charge is {total_charge:.10g} e"
        )
    return ids_array, charges_array


def fragments_from_atoms(
    atoms: ase.Atoms,
    *,
    fragment_key: str = keys.FRAGMENT_ARRAY,
    charges_key: str | Sequence[str] = keys.FRAGMENT_CHARGES_INFO,
    split_key: str | None = None,
    total_charge: float | None = None,
    where: str = "structure",
) -> tuple[np.ndarray, np.ndarray] | None:
    """The fragment assignment stored on ``atoms``, or None when it has none.

    Args:
        atoms: the structure.
        fragment_key: ``atoms.arrays`` key of per-atom fragment ids.
        charges_key: ``atoms.info`` key of the (F,) fragment charges, or a list of F info
            keys each holding one fragment's charge (e.g. ``["chargeA", "chargeB"]``).
        split_key: ``atoms.info`` key of a split index k instead of per-atom ids: atoms
            0..k-1 are fragment 0, atoms k.. are fragment 1 (the LODE dimer convention).
        total_charge: e, the structure's total charge if given separately (checked).
        where: how to name the structure in error messages.

    Returns:
        ``(ids (N,) int64, charges (F,) e)`` or None when neither ids nor a split index is
        present.

    Raises:
        ValueError: ids without charges (or the reverse), or any check of
            :func:`check_fragments`.
    """
    n = len(atoms)
    if split_key is not None and split_key in atoms.info:
        split = atoms.info[split_key]
        try:
            integral = not isinstance(split, bool) and float(split).is_integer()
        except (TypeError, ValueError):
            integral = False
        if not integral or not 0 < int(split) < n:
            raise ValueError(
                f"{where}: split index info[{split_key!r}] must be an integer in 1..{n - 1}, "
                f"got {split!r}"
            )
        ids = (np.arange(n) >= int(split)).astype(np.int64)
    elif fragment_key in atoms.arrays:
        ids = atoms.arrays[fragment_key]
    else:
        ids = None

    if isinstance(charges_key, str):
        charges = atoms.info.get(charges_key)
        missing = [charges_key] if charges is None else []
    else:
        missing = [k for k in charges_key if k not in atoms.info]
        charges = None if missing else [atoms.info[k] for k in charges_key]

    if ids is None:
        if charges is not None:
            raise ValueError(
                f"{where}: fragment charges (info {charges_key!r}) are given but no fragment "
                f"ids (arrays[{fragment_key!r}]"
                + (f" or info[{split_key!r}]" if split_key else "")
                + ")"
            )
        return None
    if missing:
        raise ValueError(
            f"{where}: fragment ids are given but no fragment charges (info {missing})"
        )
    try:
        charges = np.asarray(charges, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: fragment charges must be numbers, got {charges!r}") from None
    return check_fragments(ids, charges, n, total_charge, where=where)
