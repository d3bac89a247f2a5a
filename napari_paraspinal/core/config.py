"""The one serializer of the typed configs: frozen dataclasses to and from JSON-friendly dicts.

Model cards, checkpoints, run settings and spreadsheets store configs as JSON, and read
them back into the same frozen dataclass. Nested configs (a dataclass field, or ``None``
where the field allows it) are followed; tuples become lists on the way out and tuples
again on the way in, so a config survives the round trip unchanged. Unknown keys are an
error, not ignored: they mean another version or architecture, and silently dropping one
would change what a model does. Missing keys take the field's default, so configs written
before a field existed still load.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-friendly dict (nested configs as dicts, tuples as lists)."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"not a config dataclass: {config!r}")
    return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Build config ``cls`` from a dict written by :func:`config_to_dict` (or by hand).

    Raises ``ValueError`` for unknown keys and for a non-dict where a config is expected.
    """
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object, got {type(d).__name__}")
    hints = _hints(cls)
    unknown = set(d) - set(hints)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**{k: _typed(hints[k], v) for k, v in d.items()})


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls).items() if k in names}


def _typed(hint: Any, value: Any) -> Any:
    """``value`` from JSON as the field type ``hint`` wants it (config, tuple or as is)."""
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        configs = [a for a in options if dataclasses.is_dataclass(a)]
        if configs and isinstance(value, dict):
            return config_from_dict(configs[0], value)
        tuples = [a for a in options if typing.get_origin(a) is tuple or a is tuple]
        return _typed(tuples[0], value) if tuples and isinstance(value, list) else value
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else config_from_dict(hint, value)
    if (origin is tuple or hint is tuple) and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_typed(inner, v) if inner is not None else v for v in value)
    return value
