"""Label maps read from NIfTI, NRRD or MetaImage files and checked against an image.

A label map is read like an image (:mod:`.stacks`), then refused unless it lies on the
image's grid and holds whole values 0–8; labels that look like another convention are
accepted with a note (:func:`.labels.convention_note`).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import numpy as np

from .errors import InputError
from .geometry import Geometry
from .labels import NUM_CLASSES, convention_note
from .listing import InputRef, format_of, stat_input
from .read_errors import reading
from .stacks import choose, nearest, open_stack
from .volume_reader import VolumeStack

__all__ = ["read_labels"]

_log = logging.getLogger("napari_paraspinal.inputs")


def read_labels(
    path: str | os.PathLike[str],
    geometry: Geometry | None = None,
    *,
    index: int | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """A label map (uint8, values 0–8) from NIfTI, NRRD or MetaImage.

    With ``geometry`` the labels must lie on exactly that grid; from a 3-D file the slice at
    the geometry's position is taken unless ``index`` is given (without either, the middle).
    Values outside 0–8 are refused. A file whose labels look like another convention
    (values 1–4 only, :func:`.labels.convention_note`) is accepted with a note: appended to
    ``notes`` when the caller gives a list (and shows it), else logged once per version of
    the file on the ``napari_paraspinal.inputs`` logger, which the CLI prints on stderr.
    """
    ref = InputRef(Path(path))
    st = stat_input(ref.path)
    if format_of(ref.path) not in ("nifti", "itk"):
        raise InputError(ref.path, "label maps must be NIfTI, NRRD or MetaImage files")
    stack = open_stack(ref)
    if index is None and geometry is not None:
        index = nearest(stack, float(np.dot(geometry.origin, stack.normal)))
    k, _ = choose(ref, stack, index, None)
    with reading(ref):
        image = stack.read(k, None)
    if geometry is not None and not image.geometry.same_grid(geometry):
        raise InputError(ref.path, "the labels do not lie on the image grid: "
                                   + _grid_difference(image.geometry, geometry))
    data = _label_values(ref.path, image.data)
    note = stack.label_note() if isinstance(stack, VolumeStack) else convention_note(data)
    if note is not None and notes is not None:
        notes.append(note)
    elif note is not None:
        _note_once(str(ref.path), st.st_mtime_ns, st.st_size, note)
    return data


@functools.lru_cache(maxsize=256)
def _note_once(source: str, mtime_ns: int, size: int, note: str) -> None:
    """Log a note about a file once per version of the file (not once per slice read)."""
    _log.warning("%s: %s", source, note)


def _grid_difference(a: Geometry, b: Geometry) -> str:
    if a.shape != b.shape:
        return f"shape {a.shape[1]}×{a.shape[0]} vs {b.shape[1]}×{b.shape[0]} pixels"
    if not np.allclose(a.spacing[:2], b.spacing[:2], rtol=1e-3, atol=1e-3):
        return (f"spacing {a.spacing[0]:g}×{a.spacing[1]:g} vs "
                f"{b.spacing[0]:g}×{b.spacing[1]:g} mm")
    if not np.allclose(a.origin, b.origin, atol=1e-2):
        return (f"origin {tuple(round(v, 2) for v in a.origin)} vs "
                f"{tuple(round(v, 2) for v in b.origin)} mm")
    return "different orientation (direction matrix)"


def _label_values(path: Path, data: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        raise InputError(path, "label values must be whole numbers (found fractions or NaN)")
    lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 0.0)
    if lo < 0 or hi > NUM_CLASSES - 1:
        raise InputError(path, f"label values must be 0–{NUM_CLASSES - 1}, found "
                               f"{lo:g}–{hi:g}")
    return data.astype(np.uint8)
