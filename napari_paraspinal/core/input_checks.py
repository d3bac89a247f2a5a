"""Limits of a plausible slice, and the checks that refuse anything outside them.

Size, pixel spacing, slice thickness and direction come from headers that may be broken;
pixels may be non-finite, empty or constant. Each check raises :class:`InputError` naming
the input and the problem, before a bad slice reaches the model. Also the note for a slice
far from axial, and the check of a spacing given by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError
from .geometry import Geometry, SliceImage
from .listing import InputRef

__all__ = ["MAX_SIZE", "MAX_SPACING_MM", "MIN_SPACING_MM", "axial_note", "check_geometry",
           "check_size", "check_spacing", "spacing_arg", "validate_slice"]

#: Largest in-plane size accepted (pixels along each axis).
MAX_SIZE = 4096
#: Largest plausible in-plane pixel spacing (mm).
MAX_SPACING_MM = 10.0
#: Smallest plausible in-plane pixel spacing (mm): finer than any MRI; a smaller value is a
#: broken header (or metres/microns mistaken for mm), not an image to measure in mm².
MIN_SPACING_MM = 0.05


def validate_slice(image: SliceImage) -> None:
    """Refuse a slice that cannot be segmented: implausible geometry (size, spacing,
    thickness, direction), non-finite pixels or no content (all zero or constant)."""
    check_geometry(image.source, image.geometry)
    data = np.asarray(image.data)
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise InputError(image.source, f"contains {bad} NaN or infinite pixel values")
    lo, hi = float(data.min()), float(data.max())
    if lo == hi == 0.0:
        raise InputError(image.source, "all pixels are zero: the image is empty")
    if lo == hi:
        raise InputError(image.source, f"all pixels have the same value ({lo:g}): the image "
                                       "is constant, with no content")


def spacing_arg(ref: InputRef, spacing: tuple[float, float] | None
                ) -> tuple[float, float] | None:
    if spacing is None:
        return None
    try:
        sx, sy = (float(v) for v in spacing)
    except (TypeError, ValueError):
        raise InputError(str(ref), f"spacing must be two numbers (sx, sy) in mm, got "
                                   f"{spacing!r}") from None
    return sx, sy


def check_size(source: str, shape: tuple[int, int]) -> None:
    rows, cols = shape
    if rows > MAX_SIZE or cols > MAX_SIZE:
        raise InputError(source, f"is {cols} × {rows} pixels in-plane, larger than the "
                                 f"{MAX_SIZE} × {MAX_SIZE} limit")
    if rows < 1 or cols < 1:
        raise InputError(source, f"has no pixels ({cols} × {rows})")


def check_spacing(source: str, spacing: Sequence[float]) -> None:
    """In-plane spacing in [0.05, 10] mm; slice thickness > 0; all finite.

    A tiny spacing (0.001 mm: a 0.3 mm wide image) would otherwise be read, shrink to about
    one pixel when resampled to the model's grid, and fail later as "constant"."""
    sx, sy, sz = (float(v) for v in spacing)
    if not all(np.isfinite(v) and MIN_SPACING_MM <= v <= MAX_SPACING_MM for v in (sx, sy)):
        raise InputError(source, f"in-plane pixel spacing {sx:g} × {sy:g} mm is not "
                                 f"plausible (each must be a finite number from "
                                 f"{MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm)")
    if not (np.isfinite(sz) and sz > 0):
        raise InputError(source, f"slice thickness (spacing between slices) {sz:g} mm is "
                                 "not plausible (must be > 0)")


def check_geometry(source: str, g: Geometry) -> None:
    check_size(source, g.shape)
    check_spacing(source, g.spacing)
    m = g.matrix
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(g.origin))):
        raise InputError(source, "has a non-finite origin or direction in its header")
    i, j = m[:, 0], m[:, 1]
    if not (np.allclose([np.linalg.norm(i), np.linalg.norm(j)], 1.0, atol=1e-2)
            and abs(float(np.dot(i, j))) < 1e-2):
        raise InputError(source, "its row and column directions are not orthonormal "
                                 "(sheared or degenerate orientation in the header)")


def axial_note(g: Geometry) -> list[str]:
    """A note when the slice plane is far from axial (the model expects axial slices)."""
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(g.matrix[2, 2]))))))
    if tilt <= 45:
        return []
    return [f"the slice plane is {tilt:.0f}° from axial; this is probably not an axial slice"]
