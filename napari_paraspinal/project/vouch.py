"""What a person's label version may vouch for, and what a vouch says about its map.

A corrected or verified version lists the label values its author vouches for; training
treats every vouched value's pixels (and its absence) as true. So:

- ``--labelled`` text is parsed into values 1–8 by :func:`.labels.parse_labelled`, with
  one message naming the option and the allowed values for anything else (0, 9, ``abc``);
- an all-zero map cannot vouch for anything: it is refused (a blank export, the wrong file
  or a mask never filled in, not a slice with no spine, disc or muscle in it);
- a vouched value with no pixel is allowed (psoas outside the field of view is a real
  answer) but said: :func:`absent_note` names them for the message and the event log.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..core.labels import BY_VALUE, present_labels


def empty_map_problem(labels: np.ndarray, kind: str, labelled: Iterable[int]) -> str | None:
    """Why a person's version must be refused for an all-zero map, else None."""
    marks = sorted(labelled)
    if not marks or np.any(np.asarray(labels)):
        return None
    return (f"the label map is empty (every pixel is 0): a {kind} version cannot vouch for "
            f"labels {_names(marks)} without a single labelled pixel. Is it the right file, "
            "saved after the labelling? Nothing was saved")


def vouched_absent(labels: np.ndarray, labelled: Iterable[int]) -> list[int]:
    """The vouched label values that have no pixel in ``labels``."""
    present = set(present_labels(labels))
    return sorted(v for v in set(labelled) if v not in present)


def absent_note(labels: np.ndarray, labelled: Iterable[int]) -> str | None:
    """A note naming vouched values with no pixel (vouched as absent), else None."""
    absent = vouched_absent(labels, labelled)
    if not absent:
        return None
    return (f"vouched as absent (no pixel in the map): {_names(absent)}; if they are in the "
            "image, correct them or leave them out of --labelled")


def _names(values: Iterable[int]) -> str:
    return ", ".join(f"{v} {BY_VALUE[v].short}" for v in values)
