"""Every input opened as a stack of slices, and the choice of one slice of it.

A DICOM series or file, a PNG/TIFF/JPEG picture and a NIfTI, NRRD or MetaImage volume each
become a :class:`Stack`: its size and slice positions along the normal first, the pixels of
one slice at a time. :func:`open_stack` picks the reader by format and keeps the last stacks
while their file is unchanged; :func:`choose` picks the slice to read (by index, by nearest
position in mm, or the middle one, with a note).
"""

from __future__ import annotations

import functools
import operator
import os
import stat
from pathlib import Path
from typing import Protocol

import numpy as np

from . import dicom, raster
from .errors import InputError
from .geometry import SliceImage
from .input_checks import check_size
from .listing import SUPPORTED, InputRef, format_of, stat_input
from .read_errors import reading
from .volume_reader import VolumeStack

__all__ = ["Stack", "as_ref", "choose", "nearest", "open_stack"]


class Stack(Protocol):
    """What every format reader offers: the size first, then one slice at a time."""

    kind: str
    shape: tuple[int, int]
    normal: np.ndarray

    def positions(self) -> list[float]: ...

    def read(self, k: int, spacing: tuple[float, float] | None) -> SliceImage: ...


# --------------------------------------------------------------------------- dispatch


def as_ref(source: str | os.PathLike[str] | InputRef) -> InputRef:
    return source if isinstance(source, InputRef) else InputRef(Path(source))


def open_stack(ref: InputRef) -> Stack:
    """The stack of an input (cached while the file or folder is unchanged)."""
    st = stat_input(ref.path, str(ref))  # a pipe or device is refused before any open
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise InputError(str(ref), "is empty (0 bytes)")
    stack = _open_cached(ref, st.st_mtime_ns, st.st_size)
    check_size(str(ref), stack.shape)
    return stack


@functools.lru_cache(maxsize=2)
def _open_cached(ref: InputRef, mtime_ns: int, size: int) -> Stack:
    with reading(ref):
        if ref.path.is_dir():
            return dicom.open_series(ref.path, ref.series_uid, str(ref))
        fmt = format_of(ref.path)
        if fmt is None:
            suffix = "".join(ref.path.suffixes[-2:]) or "(none)"
            raise InputError(ref.path, f"unsupported file type {suffix!r} (supported: "
                                       f"{SUPPORTED})")
        if fmt == "dicom":
            return dicom.open_file(ref.path)
        if fmt == "raster":
            return raster.RasterStack(ref.path)
        return VolumeStack(ref.path, fmt)


# --------------------------------------------------------------------------- choosing


def choose(ref: InputRef, stack: Stack, index: int | None, position: float | None
           ) -> tuple[int, list[str]]:
    """Slice index to read, and the note explaining a choice made for the user."""
    positions = stack.positions()
    n = len(positions)
    if index is not None and position is not None:
        raise InputError(str(ref), "give a slice index or a position, not both")
    if index is not None:
        try:
            k = operator.index(index)
        except TypeError:
            raise InputError(str(ref), f"slice index {index!r} is not a whole number") from None
        if isinstance(index, bool) or not 0 <= k < n:
            raise InputError(str(ref), f"slice index {index} is out of range: this input has "
                                       f"{n} slice{'s' if n > 1 else ''} (0–{n - 1})")
        return k, []
    if position is not None:
        return _by_position(ref, stack, float(position))
    k = n // 2
    if n == 1:
        return 0, []
    return k, [f"{stack.kind} has {n} slices: took the middle one, index {k} "
               f"({positions[k]:.1f} mm along the slice normal); choose another by index"]


def _by_position(ref: InputRef, stack: Stack, position: float) -> tuple[int, list[str]]:
    positions = np.asarray(stack.positions())
    steps = np.diff(np.unique(positions))
    half = (float(np.median(steps)) if steps.size else 1.0) / 2
    if not np.isfinite(position) or not (
        positions.min() - half <= position <= positions.max() + half
    ):
        raise InputError(str(ref), f"position {position:g} mm is out of range: slices lie "
                                   f"from {positions.min():.1f} to {positions.max():.1f} mm")
    k = nearest(stack, position)
    return k, [f"took slice index {k} of {positions.size}, at {positions[k]:.1f} mm, the "
               f"nearest to the requested {position:g} mm"]


def nearest(stack: Stack, position: float) -> int:
    return int(np.argmin(np.abs(np.asarray(stack.positions()) - position)))
