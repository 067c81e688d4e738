"""Save and load models safely (DESIGN.md §5).

A model file is ``torch.save`` of a plain dict:

    {"format_version": int, "config": JSON str, "metadata": JSON str,
     "data_keys": {"total_charge": str, "fragment": str, "fragment_charges": str | [str],
                   "fragment_split": str | None},
     "state_dict": {name: tensor}}

and is read with ``torch.load(..., weights_only=True)``, so a file from a stranger cannot
run code: anything but tensors and plain containers is refused. Writes are atomic
(temporary file in the same folder, then ``os.replace``), so a crash never leaves a
half-written file in place of a good one. Each older format version has one upgrade
function in ``_UPGRADES``; files of every version are kept as test fixtures
(``tests/fixtures/``).

Format history:

- 1: format_version, config, metadata, state_dict.
- 2: ``data_keys`` (the ``atoms.info`` key of the total charge the model was trained
  with); ``config["atomic_energies"]`` lists every element or none (version 1 read a
  missing element as 0, which the upgrade writes out).
- 3: ``config["coulomb_split"]`` (Coulomb of pairs inside the cutoff kept or screened
  away); models of versions 1-2 kept every pair, which the upgrade writes out as
  ``"none"`` (the default became ``"cutoff"`` for latent charges).

Within version 3, ``data_keys`` gained the fragment keys the model was trained with
(``fragment``, ``fragment_charges``, ``fragment_split``). They are optional entries, not a
new version: a file without them reads with the training defaults, as before.
"""

from __future__ import annotations

import json
import os

from ..fileio import atomic_save, load_weights_only
from .build import build_model
from .hybrid import HybridModel

FORMAT_VERSION = 3


def default_total_charge_key() -> str:
    """The total-charge key of models that stored none: the training default."""
    from ..train.config import DataConfig

    return DataConfig.total_charge_key


def model_total_charge_key(model) -> str:
    """The ``atoms.info`` key of ``model``'s total charge (set by :func:`load_model` or
    the trainer; the training default for a model that has none)."""
    key = getattr(model, "total_charge_key", None)
    return key if isinstance(key, str) and key else default_total_charge_key()


#: The fragment data keys a model file stores (``payload["data_keys"]`` entry -> the
#: :class:`hybridpot.train.config.DataConfig` field), so that evaluation and the calculator
#: read fragments the way training did (e.g. the LODE ``indexB`` split).
FRAGMENT_KEY_FIELDS = {
    "fragment": "fragment_key",
    "fragment_charges": "fragment_charges_key",
    "fragment_split": "fragment_split_key",
}


def default_fragment_keys() -> dict:
    """The training defaults of the fragment keys, as ``{DataConfig field: value}``: what
    a model file that stored none (written before they were stored) is read with."""
    from ..train.config import DataConfig

    return {name: getattr(DataConfig, name) for name in FRAGMENT_KEY_FIELDS.values()}


def check_fragment_keys(fragment_keys: dict) -> dict:
    """Validate fragment data keys ``{DataConfig field: value}`` (missing fields take the
    training defaults) and return them complete.

    Raises:
        ValueError: an unknown field, a ``fragment_key`` that is not a non-empty string, a
            ``fragment_charges_key`` that is neither a non-empty string nor a non-empty
            list of them, or a ``fragment_split_key`` that is neither None nor a non-empty
            string.
    """
    if not isinstance(fragment_keys, dict):
        raise ValueError(f"fragment keys must be a dict, got {type(fragment_keys).__name__}")
    unknown = sorted(set(fragment_keys) - set(FRAGMENT_KEY_FIELDS.values()))
    if unknown:
        raise ValueError(
            f"unknown fragment keys {unknown}; expected {sorted(FRAGMENT_KEY_FIELDS.values())}"
        )
    keys = {**default_fragment_keys(), **fragment_keys}

    def name(value) -> bool:
        return isinstance(value, str) and bool(value)

    charges = keys["fragment_charges_key"]
    if isinstance(charges, tuple):
        charges = keys["fragment_charges_key"] = list(charges)
    if not name(keys["fragment_key"]):
        raise ValueError(f"fragment_key must be a non-empty string, got {keys['fragment_key']!r}")
    if not (name(charges) or (isinstance(charges, list) and charges and all(map(name, charges)))):
        raise ValueError(
            "fragment_charges_key must be a non-empty string or a non-empty list of them, "
            f"got {charges!r}"
        )
    if keys["fragment_split_key"] is not None and not name(keys["fragment_split_key"]):
        raise ValueError(
            "fragment_split_key must be None or a non-empty string, got "
            f"{keys['fragment_split_key']!r}"
        )
    return keys


def model_fragment_keys(model) -> dict:
    """The fragment data keys ``{DataConfig field: value}`` ``model`` was trained with (set
    by :func:`load_model` or the trainer; the training defaults for a model that has
    none)."""
    return check_fragment_keys(getattr(model, "fragment_keys", None) or {})


def resolve_fragment_keys(
    model, fragment_key=None, fragment_charges_key=None, fragment_split_key=None
) -> dict:
    """The fragment data keys to read with: each one given (not None) replaces ``model``'s
    (:func:`model_fragment_keys`); the result is checked (:func:`check_fragment_keys`).
    Used by the calculator and ``hybridpot evaluate``."""
    given = {
        "fragment_key": fragment_key,
        "fragment_charges_key": fragment_charges_key,
        "fragment_split_key": fragment_split_key,
    }
    return check_fragment_keys(
        model_fragment_keys(model) | {k: v for k, v in given.items() if v is not None}
    )


def complete_atomic_energies(config: dict) -> dict:
    """``config`` with every element in ``atomic_energies`` (missing ones 0 eV, as
    format 1 read them). Used by the model file and checkpoint upgrades."""
    config = dict(config)
    given = config.get("atomic_energies") or {}
    if given:
        config["atomic_energies"] = {
            s: float(given.get(s, 0.0)) for s in config.get("elements", [])
        } | {s: v for s, v in given.items()}
    return config


def _upgrade_1_to_2(payload: dict) -> dict:
    config = complete_atomic_energies(json.loads(payload["config"]))
    return {
        **payload,
        "format_version": 2,
        "config": json.dumps(config),
        "data_keys": {"total_charge": default_total_charge_key()},
    }


def keep_every_coulomb_pair(config: dict) -> dict:
    """``config`` with ``coulomb_split`` written out as ``"none"`` where absent: models
    from before the key kept the Coulomb energy of every pair. Used by the model file and
    checkpoint upgrades."""
    return {"coulomb_split": "none", **config}


def _upgrade_2_to_3(payload: dict) -> dict:
    config = keep_every_coulomb_pair(json.loads(payload["config"]))
    return {**payload, "format_version": 3, "config": json.dumps(config)}


# from_version -> function(payload dict) -> payload dict of version from_version + 1
_UPGRADES: dict = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3}


def _saved_state(state: dict) -> dict:
    """The state entries a model file holds: all but e3nn's constant Wigner-3j tables.

    A fresh model keeps those tables as non-persistent buffers of torch.fx modules, but a
    ``copy.deepcopy`` of the model (as the ASE calculator makes) registers them as
    persistent, and a file holding them would not load into a fresh model. They are
    constants of the architecture, rebuilt by :func:`build_model`, so they are dropped on
    save and on load.
    """
    return {
        key: value.detach().cpu()
        for key, value in state.items()
        if not key.rsplit(".", 1)[-1].startswith("_w3j_")
    }


def save_model(
    model: HybridModel,
    path: str | os.PathLike,
    metadata: dict | None = None,
    *,
    total_charge_key: str | None = None,
    fragment_keys: dict | None = None,
) -> None:
    """Write ``model`` (weights + config + format version + optional metadata) to ``path``.

    Args:
        model: a :class:`HybridModel`.
        path: destination file (conventionally ``*.pt``); written atomically.
        metadata: JSON-serialisable provenance (training data, date, metrics, ...).
        total_charge_key: the ``atoms.info`` key of the total charge the model was
            trained with (the calculator reads it); default: ``model.total_charge_key``
            when set, else ``"charge"``.
        fragment_keys: the fragment data keys the model was trained with,
            ``{"fragment_key": ..., "fragment_charges_key": ..., "fragment_split_key":
            ...}`` (fields of :class:`hybridpot.train.config.DataConfig`; missing ones take
            the training defaults). Evaluation and the calculator read fragments with
            them. Default: ``model.fragment_keys`` when set, else the training defaults.

    Raises:
        TypeError: ``model`` is not a HybridModel, or ``metadata`` is not JSON-serialisable.
        ValueError: ``total_charge_key`` is not a non-empty string, or a bad
            ``fragment_keys`` (see :func:`check_fragment_keys`).
    """
    if not isinstance(model, HybridModel):
        raise TypeError(f"model must be a HybridModel, got {type(model).__name__}")
    if total_charge_key is None:
        total_charge_key = model_total_charge_key(model)
    if not isinstance(total_charge_key, str) or not total_charge_key:
        raise ValueError(f"total_charge_key must be a non-empty string, got {total_charge_key!r}")
    fragment_keys = (
        model_fragment_keys(model) if fragment_keys is None else check_fragment_keys(fragment_keys)
    )
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
    try:
        metadata_text = json.dumps(metadata or {})
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata must be JSON-serialisable: {error}") from None
    state = _saved_state(model.state_dict())
    payload = {
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config),
        "metadata": metadata_text,
        "data_keys": {
            "total_charge": total_charge_key,
            **{entry: fragment_keys[field] for entry, field in FRAGMENT_KEY_FIELDS.items()},
        },
        "state_dict": state,
    }
    atomic_save(payload, path)


def read_model_file(path: str | os.PathLike) -> dict:
    """The raw, upgraded payload of a model file (safe: weights_only loading)."""
    payload = load_weights_only(path, "model file")
    if isinstance(payload, dict) and "checkpoint_version" in payload:
        raise ValueError(
            f"{str(path)!r} is a training checkpoint, not a model file: the model of a run "
            f"is model.pt in the same folder (written when training ends)"
        )
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise ValueError(f"{str(path)!r} is not a hybridpot model file (no format_version)")
    missing = [k for k in ("config", "state_dict") if k not in payload]
    if missing:
        raise ValueError(f"model file {str(path)!r} is incomplete: it has no {missing}")
    version = payload["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{str(path)!r} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format version {version}, newer than this hybridpot "
            f"understands ({FORMAT_VERSION}); upgrade hybridpot"
        )
    while version < FORMAT_VERSION:
        payload = _UPGRADES[version](payload)
        version += 1
    return payload


def load_model(path: str | os.PathLike) -> HybridModel:
    """Rebuild a model saved by :func:`save_model` (float64 weights are kept as saved)."""
    payload = read_model_file(path)
    model = build_model(json.loads(payload["config"]))
    state = _saved_state(payload["state_dict"])
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), None)
    if dtype is not None:
        model = model.to(dtype)
    model.load_state_dict(state)
    model.metadata = json.loads(payload.get("metadata", "{}"))
    model.total_charge_key = payload["data_keys"]["total_charge"]
    # Files written before the fragment keys were stored read with the training defaults.
    model.fragment_keys = check_fragment_keys(
        {
            field: payload["data_keys"][entry]
            for entry, field in FRAGMENT_KEY_FIELDS.items()
            if entry in payload["data_keys"]
        }
    )
    return model
