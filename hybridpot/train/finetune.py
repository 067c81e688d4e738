"""Fine-tuning: start a run from an existing model file, optionally with new elements.

What carries over from the source model (``init_from: model.pt``):

- the architecture (every ``model`` entry; the run's ``model`` section may only repeat
  the source's values, or list ``elements``);
- every weight, bit for bit; for a new element the species embedding gets a fresh
  random row and the species-dependent self-connection fresh weights for that species
  only, so structures made of the source's elements give exactly the source's
  predictions before the first step;
- the statistics: reference energies E0 of the source's elements, ``energy_scale`` and
  ``avg_num_neighbors`` (the network was trained with them). A new element's E0 is the
  least-squares fit of the residual E - sum_(old Z) n_Z E0_Z over the training
  structures that hold it (0 when no labelled structure does).

New elements are appended after the source's, so the species index of every old element
is unchanged. :func:`transfer_weights` is the reusable hook (the active-learning loop
warm-starts its models with it); :func:`freeze_parameters` stops parts from training.
"""

from __future__ import annotations

import fnmatch
import math

import numpy as np
import torch
from ase.data import atomic_numbers

from ..data.statistics import compositions_and_energies
from .config import TrainConfig
from .schema import ConfigError

#: Model-config entries that come from the data, not the architecture.
STATISTICS = ("elements", "atomic_energies", "energy_scale", "avg_num_neighbors")


def load_source(path) -> torch.nn.Module:
    """The model stored in ``path`` (:func:`hybridpot.model.load_model`), float64."""
    from ..model import load_model

    try:
        return load_model(path).double()
    except (ValueError, RuntimeError) as error:
        raise ConfigError(f"config key 'init_from': cannot load {str(path)!r}: {error}") from None


def finetune_model_config(config: TrainConfig, data, source: torch.nn.Module) -> dict:
    """The model config of a run that starts from ``source`` (see the module docstring).

    Args:
        config: the run's config (its ``model`` section may repeat source entries).
        data: the prepared data (:class:`hybridpot.train.setup.PreparedData`).
        source: the loaded source model.

    Raises:
        ConfigError: a ``model`` entry that differs from the source's architecture.
    """
    model = dict(source.config)
    for key, value in config.model.items():
        if key in STATISTICS:
            continue
        if model.get(key) != value:
            raise ConfigError(
                f"config key 'model.{key}' is {value!r} but init_from model "
                f"{config.init_from!r} has {model.get(key)!r}; a fine-tuned run keeps the "
                f"source's architecture (leave model.{key} out)"
            )
    old = list(model["elements"])
    wanted = list(config.model.get("elements") or []) + data.elements()
    new = sorted({s for s in wanted if s not in old}, key=lambda s: atomic_numbers[s])
    model["elements"] = old + new
    energies = dict(model.get("atomic_energies") or {})
    if new:
        energies.update(fit_new_atomic_energies(data.train, old, energies, new))
    if energies:
        model["atomic_energies"] = {s: float(energies.get(s, 0.0)) for s in model["elements"]}
    return model


def fit_new_atomic_energies(
    graphs, old: list[str], known: dict[str, float], new: list[str]
) -> dict[str, float]:
    """E0 (eV) of the ``new`` elements by least squares on E - sum_old n_Z E0_Z.

    Only labelled structures that hold a new element take part; a new element that no
    labelled structure holds gets 0.
    """
    counts, energies, labelled = compositions_and_energies(graphs, old + new)
    counts_old, counts_new = counts[:, : len(old)], counts[:, len(old) :]
    rows = labelled & (counts_new.sum(axis=1) > 0)
    if not rows.any():
        return dict.fromkeys(new, 0.0)
    e0_old = np.array([known.get(s, 0.0) for s in old])
    residual = energies[rows] - counts_old[rows] @ e0_old
    solution, *_ = np.linalg.lstsq(counts_new[rows], residual, rcond=None)
    present = counts_new[rows].sum(axis=0) > 0
    return {s: float(solution[k]) if present[k] else 0.0 for k, s in enumerate(new)}


@torch.no_grad()
def transfer_weights(source: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    """Copy every weight of ``source`` into ``target``, a model of the same architecture
    whose elements start with the source's (new ones appended).

    Tensors of equal shape are copied as they are. Two kinds depend on the number of
    elements S: the embedding (S, F) takes the source's rows; a species self-connection
    (an e3nn ``FullyConnectedTensorProduct`` with S x 0e as second input) takes the
    source's weights for the old species, rescaled by the ratio of the e3nn path weights
    (they hold 1/sqrt(fan-in), which grows with S), so the layer's output for an old
    species is unchanged. The new species' weights keep ``target``'s initialisation.

    Returns:
        The names of the tensors copied (all of the source's).

    Raises:
        ValueError: the elements do not extend the source's, or a tensor cannot be mapped.
    """
    old = list(source.config["elements"])
    if list(target.config["elements"][: len(old)]) != old:
        raise ValueError(
            f"target elements {target.config['elements']} must start with the source's {old}"
        )
    modules = dict(target.named_modules())
    source_modules = dict(source.named_modules())
    target_state = target.state_dict()
    copied = []
    for name, value in source.state_dict().items():
        if name not in target_state:
            raise ValueError(f"source tensor {name!r} has no counterpart in the target model")
        destination = target_state[name]
        value = value.to(destination.dtype)
        if value.shape == destination.shape:
            destination.copy_(value)
        elif (
            value.dim() in (1, 2)
            and value.shape[0] == len(old)
            and name.endswith(("embedding.weight", "shift", "polarizability_raw"))
        ):
            destination[: len(old)] = value
        else:
            owner = name.rsplit(".", 1)[0]
            _transfer_species_product(source_modules[owner], modules[owner], value, destination)
        copied.append(name)
    return copied


def _transfer_species_product(source_tp, target_tp, value, destination) -> None:
    """Copy the old species' weights of a species self-connection (see
    :func:`transfer_weights`)."""
    from e3nn import o3

    if not isinstance(target_tp, o3.FullyConnectedTensorProduct) or len(target_tp.irreps_in2) != 1:
        raise ValueError(
            f"cannot map {type(target_tp).__name__} weights of shape {tuple(value.shape)} to "
            f"{tuple(destination.shape)}: only the embedding and species self-connections "
            f"depend on the elements"
        )
    s_old = source_tp.irreps_in2[0].mul
    start_old = start_new = 0
    for ins_old, ins_new in zip(source_tp.instructions, target_tp.instructions, strict=True):
        if not ins_new.has_weight:
            continue
        size_old, size_new = math.prod(ins_old.path_shape), math.prod(ins_new.path_shape)
        w_old = value[start_old : start_old + size_old].reshape(ins_old.path_shape)
        w_new = destination[start_new : start_new + size_new].view(ins_new.path_shape)
        # path_weight multiplies the weights in the forward pass; keep their product.
        w_new[:, :s_old] = w_old * (ins_old.path_weight / ins_new.path_weight)
        start_old += size_old
        start_new += size_new


def freeze_parameters(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Set ``requires_grad=False`` on the parameters whose names match a glob pattern.

    Returns:
        The names frozen.

    Raises:
        ValueError: a pattern that matches no parameter (listing a few names).
    """
    names = [n for n, _ in model.named_parameters()]
    frozen = set()
    for pattern in patterns:
        hits = fnmatch.filter(names, pattern)
        if not hits:
            raise ValueError(
                f"pattern {pattern!r} matches no parameter; names look like {names[:4]}"
            )
        frozen.update(hits)
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return sorted(frozen)
