"""Irreps bookkeeping for the network: hidden features, edge harmonics, parity on/off.

With ``parity=True`` (O(3)) every irrep carries its true parity: the edge harmonics are
Y_l with parity (-1)^l (``0e + 1o + 2e + ...``), and only Clebsch-Gordan paths that
conserve parity exist, so a structure and its mirror image get the same energy.

With ``parity=False`` (SO(3) only) every irrep is labelled even (``0e + 1e + 2e + ...``),
including the harmonics. Under rotations alone the labels make no difference, but all
paths allowed by the triangle rule now exist, e.g. 1 x 1 -> 1 (the cross product) and,
through it, triple products (a x b) . c, which change sign under a reflection: the
network can then tell enantiomers apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from e3nn import o3

from ..hyperparameters import MAX_L, check_l_max  # noqa: F401 (re-exported)


def sh_irreps(l_max: int, parity: bool) -> o3.Irreps:
    """Irreps of the edge harmonics Y_0 .. Y_lmax: ``0e+1o+2e+..`` (parity) or ``0e+1e+..``."""
    return o3.Irreps([(1, (l, (-1) ** l if parity else 1)) for l in range(l_max + 1)])


def hidden_irreps_from(hidden, l_max: int, parity: bool) -> o3.Irreps:
    """Parse the hidden feature irreps.

    Args:
        hidden: an irreps string or ``o3.Irreps`` (e.g. ``"64x0e+64x1o+32x2e"``); or an int
            (that many channels for every l = 0..l_max); or a sequence of ints (channels for
            l = 0, 1, ...; a 0 skips that l). Ints get the natural parity (-1)^l.
        l_max: the largest l of the edge harmonics; hidden irreps may not exceed it.
        parity: False relabels every irrep as even (SO(3) features, see the module doc).

    Returns:
        sorted, simplified irreps that contain at least one 0e channel.
    """
    if isinstance(hidden, bool):
        raise TypeError(f"hidden_irreps must be irreps, an int or a list of ints, got {hidden!r}")
    if isinstance(hidden, int):
        if hidden < 1:
            raise ValueError(f"hidden_irreps as an int must be >= 1 channels, got {hidden}")
        hidden = [hidden] * (l_max + 1)
    if isinstance(hidden, (str, o3.Irreps)):
        try:
            irreps = o3.Irreps(hidden)
        except (ValueError, AssertionError, TypeError) as err:
            raise ValueError(
                f"hidden_irreps must be an irreps string like '64x0e+64x1o', got {hidden!r} ({err})"
            ) from None
    elif isinstance(hidden, Sequence) and all(
        isinstance(c, int) and not isinstance(c, bool) for c in hidden
    ):
        if len(hidden) == 0 or any(c < 0 for c in hidden):
            raise ValueError(
                f"hidden_irreps as channels per l must be a non-empty list of ints >= 0, "
                f"got {list(hidden)}"
            )
        irreps = o3.Irreps([(c, (l, (-1) ** l)) for l, c in enumerate(hidden) if c > 0])
    else:
        raise TypeError(
            f"hidden_irreps must be an irreps string, an int or a list of ints, "
            f"got {type(hidden).__name__} {hidden!r}"
        )
    if not parity:
        irreps = o3.Irreps([(mul, (ir.l, 1)) for mul, ir in irreps])
    irreps = irreps.sort().irreps.simplify()
    irreps = o3.Irreps([(mul, ir) for mul, ir in irreps if mul > 0])
    if irreps.count("0e") == 0:
        raise ValueError(
            f"hidden_irreps must contain even scalars (0e) for the energy and charge readouts, "
            f"got {str(irreps)!r}"
        )
    if irreps.lmax > l_max:
        raise ValueError(
            f"hidden_irreps {str(irreps)!r} have l = {irreps.lmax} > l_max = {l_max}; "
            f"raise l_max or drop the higher-l channels"
        )
    return irreps


# Names e3nn's code generation gives its Clebsch-Gordan buffers: _w3j_{l1}_{l2}_{l3}.
_W3J_NAME = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)")


def exact_float64(module: torch.nn.Module) -> torch.nn.Module:
    """Cast ``module`` to float64 in place and recompute e3nn's Clebsch-Gordan buffers.

    e3nn builds its Clebsch-Gordan (Wigner 3j) buffers in torch's default dtype (float32);
    a plain ``.double()`` keeps their float32 rounding (~1e-8), which breaks equivariance at
    the 1e-10 level. Recomputing them in float64 after the cast makes the module exact;
    casting it down to float32 later rounds once, as it should. They are made
    non-persistent (not in ``state_dict``).
    """
    module.double()
    for name, _ in list(module.named_buffers()):
        owner_name, _, buffer_name = name.rpartition(".")
        match = _W3J_NAME.fullmatch(buffer_name)
        if match:
            owner = module.get_submodule(owner_name)
            l1, l2, l3 = (int(g) for g in match.groups())
            # Constants, not state: kept out of state_dict, so loading weights saved from a
            # float32 network cannot bring the float32 rounding back.
            owner.register_buffer(
                buffer_name, o3.wigner_3j(l1, l2, l3, dtype=torch.float64), persistent=False
            )
    return module
