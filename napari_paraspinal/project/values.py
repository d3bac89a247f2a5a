"""The values the project store writes, checked and encoded: times, JSON text, choices, label
maps and the label values a version vouches for.

Plain functions with no database of their own; the store (:mod:`.store`) and its helper
modules share them. :mod:`.store` re-exports the ones its siblings import from there.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .records import LabelVersion
from .schema import HUMAN_KINDS, LABEL_VALUES


def now_text() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def os_user() -> str | None:
    """The operating system's user name, recorded as a label version's author (None when the
    system cannot say, e.g. a container without a passwd entry)."""
    try:
        return getpass.getuser() or None
    except (OSError, KeyError, ImportError):
        return None


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays and paths, as the pipeline's rows hold them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_text(value: Any) -> str:
    try:
        return json.dumps(value, default=_json_default, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot store this value as JSON: {err}") from None


def check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def labelled_values(labelled: Iterable[int] | None, kind: str) -> list[int]:
    """The label values a version vouches for: sorted, unique, each a real label."""
    if labelled is None:
        return list(LABEL_VALUES)
    values = sorted({int(v) for v in labelled})
    bad = [v for v in values if v not in LABEL_VALUES]
    if bad:
        raise ValueError(f"labelled values must be among {list(LABEL_VALUES)}; got {bad}")
    if not values and kind in HUMAN_KINDS:
        raise ValueError(f"a {kind} version must vouch for at least one label")
    return values


def label_array(labels: np.ndarray) -> np.ndarray:
    """A 2-D map of whole label values (fractions are refused, not truncated)."""
    data = np.asarray(labels)
    if data.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got shape {data.shape}")
    if data.dtype == bool or not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"labels must hold numbers 0–8, got dtype {data.dtype}")
    if not np.issubdtype(data.dtype, np.integer) and not (
            np.all(np.isfinite(data)) and np.array_equal(data, np.round(data))):
        raise ValueError("labels must be whole numbers (found fractions or NaN)")
    return data


def verified_of(versions: Sequence[Any]) -> list[int]:
    """Labels vouched for by the run of human versions that ends with the latest one.

    Accepts (kind, labelled) pairs or :class:`LabelVersion` rows, oldest first. A new
    automatic version starts over: nothing of it has been checked by a person.
    """
    out: set[int] = set()
    for v in reversed(versions):
        kind, marks = (v.kind, v.labelled) if isinstance(v, LabelVersion) else v
        if kind not in HUMAN_KINDS:
            break
        out.update(marks)
    return sorted(out)
