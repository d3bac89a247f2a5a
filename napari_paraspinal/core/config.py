"""Dataclass configs to and from JSON-friendly dicts (model cards store them)."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], d: dict) -> T:
    """Build a config dataclass from a dict; unknown keys are an error, not ignored.

    JSON has no tuples: lists given for tuple fields become tuples again, so a config
    survives the round trip through a model card unchanged.
    """
    types = {f.name: str(f.type) for f in fields(cls)}
    unknown = set(d) - set(types)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) and types[k].startswith("tuple") else v
                  for k, v in d.items()})
