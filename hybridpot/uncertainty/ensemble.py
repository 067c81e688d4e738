"""Deep ensembles: the reference the one-model (LLPR) uncertainty is compared with.

M models trained from different seeds on the same data (``hybridpot ensemble``) predict
the mean of their outputs, and the spread as uncertainty:

    sigma_E = alpha_E std_m(E_m)          sigma_F,i = alpha_F sqrt(mean_a var_m(F_m,ia))
    sigma_q,i = alpha_q std_m(q_m,i)

(std over members, population normalisation; the force value is per Cartesian component,
like the LLPR's). The factors alpha are fitted on the validation set as for the LLPR
(maximum likelihood, :func:`calibrate_ensemble`). An ensemble is saved as a JSON file
listing its member model files (each a normal, weights-only model file) and its factors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .. import keys
from ..data.dataset import GraphLoader
from ..data.graph import AtomicGraph
from ..fileio import atomic_write_text, require_file
from ..train.targets import structure_mask
from .calibration import calibration_factor
from .llpr import UQ_PROPERTIES

ENSEMBLE_FORMAT = "hybridpot-ensemble"

_SIGMA_KEYS = {
    "energy": keys.ENERGY_UNCERTAINTY,
    "forces": keys.FORCES_UNCERTAINTY,
    "charges": keys.CHARGES_UNCERTAINTY,
}


class EnsembleModel(torch.nn.Module):
    """Mean and calibrated spread of several hybrid models (a deep ensemble).

    Args:
        members: two or more :class:`hybridpot.model.HybridModel` with the same elements
            and cutoff (their uncertainty states, if any, are not used).

    Raises:
        ValueError: fewer than two members, or members with other elements or cutoffs.
    """

    def __init__(self, members: list) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        first = members[0]
        for k, m in enumerate(members[1:], start=1):
            if m.config["elements"] != first.config["elements"] or m.cutoff != first.cutoff:
                raise ValueError(
                    f"ensemble member {k} has elements {m.config['elements']} and cutoff "
                    f"{m.cutoff}, member 0 {first.config['elements']} and {first.cutoff}"
                )
        self.members = torch.nn.ModuleList(members)
        self.register_buffer("alpha2", torch.zeros(len(UQ_PROPERTIES), dtype=torch.float64))

    @property
    def cutoff(self) -> float:
        return self.members[0].cutoff

    @property
    def config(self) -> dict:
        """Member 0's config (all members share elements and cutoff)."""
        return self.members[0].config

    @property
    def electrostatics(self):
        return self.members[0].electrostatics

    @property
    def total_charge_key(self):
        return getattr(self.members[0], "total_charge_key", None)

    @property
    def fragment_keys(self):
        return getattr(self.members[0], "fragment_keys", None)

    def uncertainty_keys(self) -> list[str]:
        """The ``*_UNCERTAINTY`` output keys this ensemble predicts (the calibrated ones)."""
        return [
            _SIGMA_KEYS[name]
            for k, name in enumerate(UQ_PROPERTIES)
            if self.alpha2[k] > 0
            and (name != "charges" or self.members[0].network.charge_readout is not None)
        ]

    def spread(self, graph: AtomicGraph, **options) -> tuple[dict, dict]:
        """(mean outputs, uncalibrated spreads keyed by property) of ``graph``."""
        outs = [member(graph, **options) for member in self.members]
        # Every output the members give (energies, forces, charges, stress, field terms,
        # ...) is averaged; the members' own uncertainties, if any, are not used.
        mean = {
            key: torch.stack([o[key].detach() for o in outs]).mean(0)
            for key in outs[0]
            if key not in _SIGMA_KEYS.values() and key != keys.NODE_FEATURES
        }
        stack = {key: torch.stack([o[key].detach() for o in outs]) for key in mean}
        spread = {"energy": stack[keys.ENERGY].std(0, unbiased=False)}
        if keys.FORCES in stack:
            spread["forces"] = stack[keys.FORCES].var(0, unbiased=False).mean(-1).sqrt()
        if keys.CHARGES in stack:
            spread["charges"] = stack[keys.CHARGES].std(0, unbiased=False)
        return mean, spread

    def forward(self, graph: AtomicGraph, **options) -> dict[str, torch.Tensor]:
        """Member means of every output, plus the calibrated ``*_UNCERTAINTY`` keys
        (detached; force uncertainty only when forces are computed). Options as for
        :meth:`hybridpot.model.HybridModel.forward`."""
        mean, spread = self.spread(graph, **options)
        for k, name in enumerate(UQ_PROPERTIES):
            key = _SIGMA_KEYS[name]
            if name in spread and key in self.uncertainty_keys():
                mean[key] = self.alpha2[k].to(spread[name].dtype).sqrt() * spread[name]
        return mean


def calibrate_ensemble(ensemble: EnsembleModel, valid: list[AtomicGraph], batch_size: int = 8):
    """Fit the ensemble's factors alpha^2 = mean(e^2 / spread^2) on labelled ``valid``
    graphs (values with zero spread left out); charges only where labelled. Returns the
    ensemble."""
    if not valid:
        raise ValueError("calibrate_ensemble needs validation structures (valid is empty)")
    p = next(p for p in ensemble.parameters() if p.is_floating_point())
    loader = GraphLoader([g.to(dtype=p.dtype) for g in valid], batch_size, device=p.device)
    rows = {name: ([], []) for name in UQ_PROPERTIES}
    label_keys = {"energy": keys.ENERGY, "forces": keys.FORCES, "charges": keys.CHARGES}
    for batch in loader:
        mean, spread = ensemble.spread(batch, compute_forces=True, compute_stress=False)
        for name, key in label_keys.items():
            if key not in batch.labels or name not in spread:
                continue
            mask = structure_mask(batch, key)
            if name != "energy":
                mask = mask[batch.batch]
            error = mean[key].double() - batch.labels[key].double().reshape(mean[key].shape)
            error = error.reshape(error.shape[0], -1)[mask]
            sigma = spread[name].double()[mask][:, None].expand_as(error)
            rows[name][0].append(error.reshape(-1).cpu().numpy())
            rows[name][1].append(sigma.reshape(-1).cpu().numpy())
    alpha2 = torch.zeros(len(UQ_PROPERTIES), dtype=torch.float64)
    for k, name in enumerate(UQ_PROPERTIES):
        if not rows[name][0]:
            continue
        e, s = np.concatenate(rows[name][0]), np.concatenate(rows[name][1])
        keep = s > 0
        if keep.any():
            alpha2[k] = calibration_factor(e[keep], s[keep]) ** 2
    if not (alpha2[0] > 0 and alpha2[1] > 0):
        raise ValueError("calibrate_ensemble: the validation set needs energy and force labels")
    ensemble.alpha2.copy_(alpha2.to(ensemble.alpha2.device))
    return ensemble


def save_ensemble(ensemble: EnsembleModel, members: list, path: str | os.PathLike) -> None:
    """Write ``path`` (JSON, atomically): the member model files (``members``, paths
    relative to the JSON file's folder or absolute) and the calibration factors."""
    payload = {
        "format": ENSEMBLE_FORMAT,
        "version": 1,
        "members": [str(m) for m in members],
        "alpha2": [float(a) for a in ensemble.alpha2],
    }
    atomic_write_text(path, json.dumps(payload, indent=2))


def load_ensemble(path: str | os.PathLike) -> EnsembleModel:
    """Read an ensemble written by :func:`save_ensemble` (members loaded weights-only)."""
    from ..model import load_model

    path = require_file(path, "ensemble file")
    try:
        payload = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not an ensemble file (not JSON: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != ENSEMBLE_FORMAT:
        raise ValueError(f"{str(path)!r} is not a hybridpot ensemble file")
    folder = Path(path).parent
    members = [load_model(folder / m) for m in payload["members"]]
    ensemble = EnsembleModel(members)
    ensemble.alpha2.copy_(torch.tensor(payload["alpha2"], dtype=torch.float64))
    ensemble.eval()
    return ensemble


def train_ensemble(config, n: int, *, overwrite: bool = False) -> Path:
    """Train ``n`` members of ``config`` (seeds ``config.seed + k``) into
    ``output_dir/member_<k>``, calibrate on the validation set and write
    ``output_dir/ensemble.json``; a member whose ``model.pt`` exists is reused (an
    interrupted run resumes at the member it stopped in). Returns the JSON path."""
    import copy

    from ..model import load_model
    from ..train.setup import prepare_data
    from ..train.trainer import CHECKPOINT, MODEL, train

    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"an ensemble needs n >= 2 members, got {n!r}")
    out = Path(config.output_dir)
    names = []
    for k in range(n):
        member = copy.deepcopy(config)
        member.seed = config.seed + k
        member.uncertainty = False
        member.output_dir = str(out / f"member_{k}")
        folder = Path(member.output_dir)
        if not (folder / MODEL).is_file() or overwrite:
            resume = (folder / CHECKPOINT).is_file() and not overwrite
            train(member, resume=resume, overwrite=not resume)
        names.append(f"member_{k}/{MODEL}")
    ensemble = EnsembleModel([load_model(out / name) for name in names])
    data = prepare_data(config)
    if not data.valid:
        raise ValueError("an ensemble is calibrated on a validation set: give data.valid")
    calibrate_ensemble(ensemble, data.valid, config.eval_batch_size or config.batch_size)
    save_ensemble(ensemble, names, out / "ensemble.json")
    return out / "ensemble.json"
