"""Dataclass configs to and from JSON-friendly dicts (model cards store them)."""

from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], d: dict) -> T:
    """Build a config dataclass from a dict; unknown keys are an error, not ignored."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**d)
