"""The 3-D grid of a stack of axial slices, and label volumes written on it.

A stack's slices are read one at a time (:func:`.io.read_slice`); what they share is the grid
of the whole input: in-plane size, spacing and axes of its first slice, the slice normal and
an even distance between slices. A label volume is written on exactly that grid, so it lies
on the user's image in any viewer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path
from .errors import InputError
from .geometry import Geometry
from .io import InputRef, list_slices, read_slice
from .labels import NUM_CLASSES

#: Largest relative spread of the distances between neighbouring slices in one stack.
SPACING_TOLERANCE = 0.01


@dataclass(frozen=True)
class StackGrid:
    """Where every slice of a stack lies: the first slice's grid stepped along the normal."""

    first: Geometry
    positions: tuple[float, ...]  # mm along the normal, ascending
    step_mm: float  # distance between neighbouring slices
    normal: tuple[float, float, float]

    @property
    def count(self) -> int:
        return len(self.positions)

    def to_sitk(self, volume: np.ndarray) -> sitk.Image:
        """A 3-D SimpleITK image holding ``volume`` (slices × rows × columns) on this grid."""
        if volume.shape != (self.count, *self.first.shape):
            raise ValueError(f"volume shape {volume.shape} does not match the stack "
                             f"{(self.count, *self.first.shape)}")
        m = self.first.matrix.copy()
        m[:, 2] = self.normal
        img = sitk.GetImageFromArray(np.ascontiguousarray(volume))
        img.SetSpacing((*(float(s) for s in self.first.spacing[:2]), float(self.step_mm)))
        img.SetOrigin(tuple(float(o) for o in self.first.origin))
        img.SetDirection(tuple(float(v) for v in m.ravel()))
        return img


def stack_grid(source: str | os.PathLike[str] | InputRef) -> StackGrid:
    """The grid of an input's slices; :class:`InputError` for a stack whose slices are not
    evenly spaced (a label volume could not lie on it)."""
    infos = list_slices(source)
    first = read_slice(source, index=0).geometry
    positions = tuple(i.position for i in infos)
    if len(infos) == 1:
        return StackGrid(first, positions, float(first.spacing[2]),
                         tuple(float(v) for v in first.matrix[:, 2]))
    last = read_slice(source, index=len(infos) - 1).geometry
    along = np.asarray(last.origin) - np.asarray(first.origin)
    normal = along / (np.linalg.norm(along) or 1.0)
    steps = np.diff(positions)
    step = float(np.median(steps))
    if step <= 0 or np.abs(steps - step).max() > SPACING_TOLERANCE * step:
        raise InputError(str(source), "its slices are not evenly spaced (distances "
                                      f"{steps.min():.2f}–{steps.max():.2f} mm); split the "
                                      "series or choose slices with --slices")
    tilt = float(np.degrees(np.arccos(np.clip(abs(normal @ first.matrix[:, 2]), 0, 1))))
    if tilt > 1.0:
        raise InputError(str(source), f"its slices are stacked {tilt:.1f}° off their normal "
                                      "(gantry tilt); a label volume cannot lie on it")
    return StackGrid(first, positions, step, tuple(float(v) for v in normal))


def write_label_volume(volume: np.ndarray, grid: StackGrid,
                       path: str | os.PathLike[str]) -> Path:
    """Write a label volume (slices × rows × columns, values 0–8) on the stack's grid."""
    volume = np.asarray(volume)
    if volume.size and (volume.min() < 0 or volume.max() >= NUM_CLASSES):
        raise ValueError(f"label values must be 0–{NUM_CLASSES - 1}")
    with atomic_path(path) as tmp:
        sitk.WriteImage(grid.to_sitk(volume.astype(np.uint8)), str(tmp), useCompression=True)
    return Path(path)
