"""What one case reads: a slice of an image, or of a Dixon water/fat pair.

A case is an input (a file, a DICOM series) or a Dixon pair of them. Each chosen slice is
read and checked here; for a Dixon pair the water and fat slices are paired by voxel and the
slice to segment is their sum, the in-phase image (the model segments it better than water
alone, and fat looks bright on it as on T2w).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .core.errors import InputError
from .core.geometry import SliceImage
from .core.io import InputRef, expand_inputs, image_stem, list_slices, read_slice, validate_slice
from .dixon import pair_dixon


@dataclass(frozen=True)
class DixonRef:
    """A Dixon pair: water and fat images of one series (same grid, slice for slice);
    ``note`` (how a pair found in a DICOM study was paired) is said on the case's rows."""

    water: InputRef
    fat: InputRef
    note: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"{self.water} + {self.fat}"


@dataclass
class CaseSlice:
    """One slice of a case: the image to segment and measure, and for Dixon its parts."""

    image: SliceImage
    water: SliceImage | None = None
    fat: SliceImage | None = None
    notes: list[str] = field(default_factory=list)


def dixon_slice_count(ref: DixonRef) -> int:
    """Slices of a Dixon pair; :class:`InputError` naming the fat image when the counts
    differ."""
    n_water, n_fat = len(list_slices(ref.water)), len(list_slices(ref.fat))
    if n_water != n_fat:
        raise InputError(str(ref.fat), f"has {n_fat} slices but its water image "
                                       f"{ref.water.path.name} has {n_water}")
    return n_water


def read_case_slice(ref: InputRef | DixonRef, k: int,
                    spacing: tuple[float, float] | None = None) -> CaseSlice:
    """Slice ``k`` of a case, read and checked (:class:`InputError` if it cannot be used)."""
    if not isinstance(ref, DixonRef):
        image = read_slice(ref, index=k, spacing=spacing)
        validate_slice(image)
        return CaseSlice(image, notes=[*_note(ref), *image.notes])
    water = read_slice(ref.water, index=k, spacing=spacing)
    fat = read_slice(ref.fat, index=k, spacing=spacing)
    water, fat, notes = pair_dixon(water, fat)
    image = water.with_data(water.data + fat.data, source=str(ref),
                            notes=[*water.notes, *notes])
    validate_slice(image)
    return CaseSlice(image, water, fat, notes=[*_note(ref), *image.notes])


def _note(ref: InputRef | DixonRef) -> list[str]:
    note = getattr(ref, "note", "")  # a plain path has none
    return [note] if note else []


def slice_columns(image: SliceImage) -> dict[str, int | float]:
    """Where a slice lies in its input: index and position along the normal (mm)."""
    return {"slice": int(image.meta.get("slice_index", 0)),
            "slice_position_mm": round(float(image.meta.get("slice_position_mm", 0.0)), 3)}


def pair_inputs(water: Sequence[str | os.PathLike[str]],
                fat: Sequence[str | os.PathLike[str]]) -> list[DixonRef]:
    """Water and fat inputs paired as cases: one each, or files and folders whose names
    match once "water"/"fat" (any case) are taken out. :class:`InputError` names what has no
    partner."""
    waters, fats = expand_inputs(water), expand_inputs(fat)
    if len(waters) == 1 and len(fats) == 1:
        return [DixonRef(waters[0], fats[0])]
    by_key = {_pair_key(r): r for r in fats}
    pairs = []
    for w in waters:
        f = by_key.pop(_pair_key(w), None)
        if f is None:
            raise InputError(str(w), "no fat image with a matching name (pair water and fat "
                                     "by name, e.g. case1_water.nii.gz and case1_fat.nii.gz)")
        pairs.append(DixonRef(w, f))
    if by_key:
        raise InputError(str(next(iter(by_key.values()))), "a fat image without a water image")
    return pairs


def _pair_key(ref: InputRef) -> str:
    path = Path(ref.path)
    stem = image_stem(path) if path.is_file() else path.name
    key = stem.lower()
    for word in ("water", "fat"):
        key = key.replace(word, "")
    return key.strip("_-. ") + (ref.series_uid or "")
