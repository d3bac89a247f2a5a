"""Read axial slices and label maps from DICOM, NIfTI, NRRD, MetaImage, PNG, TIFF and JPEG.

Every input becomes a stack of slices sorted along the slice normal; one of them is chosen
(by index, by nearest position in mm, or the middle one, with a note) and returned as a
:class:`SliceImage` in LPS world coordinates. Any bad input — missing, empty, truncated or
corrupt files, unsupported dimensions, colour, absurd spacing, oversized images — raises
:class:`InputError` naming the file and the problem; library exceptions never escape.

This module is the stable public entry point: it holds the slice reading and naming
functions and re-exports the rest from the modules that do the work. Inputs are listed
(folders walked, special files refused) by :mod:`.listing`; stacks are opened by format and
a slice chosen by :mod:`.stacks` (NIfTI, NRRD and MetaImage in :mod:`.volume_reader`, DICOM
in :mod:`.dicom`, PNG/TIFF/JPEG in :mod:`.raster`); limits and checks are in
:mod:`.input_checks`, label maps in :mod:`.label_reader`, library error text in
:mod:`.read_errors`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import dicom_files, raster
from .errors import InputError
from .geometry import SliceImage
from .input_checks import (
    MAX_SIZE,
    MAX_SPACING_MM,
    MIN_SPACING_MM,
    axial_note,
    check_geometry,
    spacing_arg,
    validate_slice,
)
from .label_reader import read_labels
from .listing import ITK as _ITK
from .listing import NIFTI as _NIFTI
from .listing import InputRef, Listing, expand_inputs, list_inputs
from .listing import format_of as _format_of
from .read_errors import describe_error, reading
from .stacks import as_ref, choose, open_stack

__all__ = ["MAX_SIZE", "MAX_SPACING_MM", "MIN_SPACING_MM", "InputRef", "Listing", "SliceInfo",
           "describe_error", "expand_inputs", "image_stem", "is_supported", "labelled_pairs",
           "list_inputs", "list_slices", "read_labels", "read_slice", "validate_slice"]


@dataclass(frozen=True)
class SliceInfo:
    """One slice of an input: its index and its position along the slice normal (mm)."""

    index: int
    position: float


def is_supported(path: str | os.PathLike[str]) -> bool:
    """True for an existing file of a supported type (by suffix or DICOM preamble) or a
    folder directly holding DICOM files. Never raises: napari asks it about anything."""
    try:
        p = Path(path)
        if p.is_dir():
            return dicom_files.folder_has_dicom(p)
        return p.is_file() and _format_of(p) is not None
    except Exception:
        return False


def image_stem(path: str | os.PathLike[str]) -> str:
    """A file's name without its image suffix (``case.nii.gz`` -> ``case``)."""
    name = Path(path).name
    for suffix in (*_NIFTI[::-1], *_ITK, ".dcm", ".ima", *raster.RASTER_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_slices(source: str | os.PathLike[str] | InputRef) -> list[SliceInfo]:
    """The slices of an input, sorted along the slice normal (one for 2-D images)."""
    stack = open_stack(as_ref(source))
    return [SliceInfo(k, float(pos)) for k, pos in enumerate(stack.positions())]


def read_slice(
    source: str | os.PathLike[str] | InputRef,
    *,
    index: int | None = None,
    position: float | None = None,
    spacing: tuple[float, float] | None = None,
) -> SliceImage:
    """One axial slice (float32, LPS geometry) of an input.

    ``index`` or ``position`` (mm along the slice normal, nearest slice) chooses a slice of a
    3-D input; by default the middle one is taken and a note says so. ``spacing`` (mm along
    columns, rows) is needed for PNG/TIFF/JPEG and DICOM without PixelSpacing. Structural
    problems raise :class:`InputError` here; pixel content is checked by
    :func:`validate_slice`.
    """
    ref = as_ref(source)
    stack = open_stack(ref)
    given = spacing_arg(ref, spacing)
    k, notes = choose(ref, stack, index, position)
    with reading(ref):
        image = stack.read(k, given)
    check_geometry(str(ref), image.geometry)
    image.notes[:0] = notes
    image.notes.extend(axial_note(image.geometry))
    image.meta.update(slice_index=k, slice_count=len(stack.positions()),
                      slice_position_mm=float(stack.positions()[k]))
    return image


def labelled_pairs(data_dir: str | os.PathLike[str]) -> list[tuple[InputRef, Path]]:
    """The inputs of ``data_dir/images`` with their label maps from ``data_dir/labels``
    (same file stem); a missing folder or label map is an error naming it."""
    root = Path(data_dir)
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(root, "expected a dataset folder with images/ and labels/")
    by_stem = {image_stem(p): p for p in sorted(labels.iterdir())}
    pairs = []
    for ref in expand_inputs([images]):
        stem = image_stem(ref.path)
        if stem not in by_stem:
            raise InputError(ref.path, f"no label map named {stem}.* in {labels}")
        pairs.append((ref, by_stem[stem]))
    return pairs
