"""Build typed dataclasses from plain mappings, checking keys and value types.

Used by :mod:`hybridpot.train.config`: an unknown key is reported with the closest valid
one (difflib), a value of the wrong type with the expected type and the value received.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key and the problem."""


class UnknownKeyError(ConfigError):
    """A key that the config does not have; ``key`` is its dotted name, ``close`` the
    closest valid key in the same section (or None)."""

    def __init__(self, key: str, close: str | None):
        hint = f"; did you mean {close!r}?" if close else ""
        super().__init__(f"unknown config key {key!r}{hint}")
        self.key = key
        self.close = close


def type_name(hint: Any) -> str:
    """A readable name of a type hint (``float | null``, ``'mse' | 'huber'``)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(hint))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(hint))
        return f"{origin.__name__}[{args}]"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` checked against the type ``hint`` (ints accepted for floats, numeric
    strings such as ``1e-3``, which YAML 1.1 reads as text, accepted for floats)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
    elif origin is Literal:
        if value in typing.get_args(hint):
            return value
    elif origin is list:
        (item,) = typing.get_args(hint)
        if isinstance(value, (list, tuple)):
            return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif hint is dict:
        if isinstance(value, dict):
            return copy.deepcopy(value)
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ConfigError(
        f"config key {key!r} must be {type_name(hint)}, got {value!r} ({type(value).__name__})"
    )


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type hint of dataclass ``cls``."""
    return typing.get_type_hints(cls)


def build_dataclass(cls: type, values: Any, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking every key and type."""
    where = prefix.rstrip(".") or "the config"
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {values!r}")
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            full = f"{prefix}{key}"
            candidates = [f"{prefix}{n}" for n in names]
            close = difflib.get_close_matches(full, candidates, n=1, cutoff=0.6)
            raise UnknownKeyError(full, close[0] if close else None)
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_dataclass(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}")
    return cls(**kwargs)
