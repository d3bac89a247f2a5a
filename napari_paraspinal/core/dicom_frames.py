"""The 2-D images (frames) of a DICOM file as its header describes them: where each lies and
how its pixels are scaled.

Geometry comes from ImagePositionPatient, ImageOrientationPatient and PixelSpacing, per frame
for multi-frame files (functional groups, else a classic file's frame offsets), so it is the
same whichever decoder produces the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True)
class Frame:
    """One 2-D image of a DICOM file: where it lies and how its pixels are scaled."""

    path: Path
    frame: int | None  # index in a multi-frame file, None for single-frame files
    rows: int
    cols: int
    origin: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None  # row direction (i), then column direction (j)
    pixel_spacing: tuple[float, float] | None  # along i, along j
    thickness: float | None
    slope: float
    intercept: float
    instance: int

    @property
    def direction(self) -> np.ndarray:
        """3×3 matrix with columns i, j and the slice normal (unit vectors)."""
        o = np.asarray(self.orientation or _IDENTITY, dtype=float)
        i, j = o[:3], o[3:]
        i = i / (np.linalg.norm(i) or 1.0)
        j = j / (np.linalg.norm(j) or 1.0)
        return np.stack([i, j, np.cross(i, j)], axis=1)

    @property
    def position(self) -> float:
        """Position along the slice normal in mm (0 without ImagePositionPatient)."""
        if self.origin is None:
            return 0.0
        return float(np.dot(self.origin, self.direction[:, 2]))


def frames_of(path: Path, ds: Dataset) -> list[Frame]:
    """Every image frame of one file, with per-frame geometry and rescale."""
    n = max(int_or(ds.get("NumberOfFrames"), 1), 1)
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    offsets = _frame_offsets(ds, n)
    frames = []
    for f in range(n):
        groups = [per_frame[f] if f < len(per_frame) else None, shared, ds]
        origin = _find(groups, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _find(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = _find(groups, "PixelMeasuresSequence", "PixelSpacing")
        thickness = _find(groups, "PixelMeasuresSequence", "SliceThickness")
        slope = _find(groups, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _find(groups, "PixelValueTransformationSequence", "RescaleIntercept")
        frame = Frame(
            path=path,
            frame=f if n > 1 else None,
            rows=int(ds.Rows),
            cols=int(ds.Columns),
            origin=_floats(origin, 3),
            orientation=_floats(orientation, 6),
            pixel_spacing=_pixel_spacing(spacing),
            thickness=_positive(thickness) or _positive(ds.get("SpacingBetweenSlices")),
            slope=float(slope) if slope not in (None, "") else 1.0,
            intercept=float(intercept) if intercept not in (None, "") else 0.0,
            instance=int_or(ds.get("InstanceNumber"), 0),
        )
        if offsets is not None and frame.origin is not None:
            shifted = np.asarray(frame.origin) + offsets[f] * frame.direction[:, 2]
            frame = replace(frame, origin=tuple(float(v) for v in shifted))
        frames.append(frame)
    return frames


def _item(ds: Dataset | None, sequence: str) -> Dataset | None:
    seq = ds.get(sequence) if ds is not None else None
    return seq[0] if seq else None


def _find(groups: list[Dataset | None], sequence: str, attr: str):
    """``attr`` from the first functional group holding it, else from the top level."""
    for group in groups[:-1]:
        item = _item(group, sequence)
        if item is not None and item.get(attr) is not None:
            return item.get(attr)
    return groups[-1].get(attr)


def _frame_offsets(ds: Dataset, n: int) -> np.ndarray | None:
    """Offsets (mm) of the frames of a classic multi-frame file along its normal."""
    if n < 2 or ds.get("PerFrameFunctionalGroupsSequence"):
        return None
    grid = ds.get("GridFrameOffsetVector")
    if grid is not None and len(grid) == n:
        values = np.asarray([float(v) for v in grid])
        return values - values[0]
    step = _positive(ds.get("SpacingBetweenSlices"))
    return np.arange(n) * step if step else None


def _floats(value, n: int) -> tuple[float, ...] | None:
    if value is None or len(value) != n:
        return None
    return tuple(float(v) for v in value)


def _pixel_spacing(value) -> tuple[float, float] | None:
    """DICOM PixelSpacing is (between rows, between columns): returned as (along i, along j)."""
    pair = _floats(value, 2)
    return None if pair is None else (pair[1], pair[0])


def _positive(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def int_or(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
