"""DICOM files and series: find the series in a folder, order their slices along the slice
normal and decode one slice with its geometry.

Headers are read with pydicom (without pixel data) so listing a series is cheap. Pixels are
decoded by pydicom (pylibjpeg covers JPEG, JPEG-LS, JPEG 2000 and RLE); SimpleITK/GDCM is the
fallback for streams pydicom cannot decode. Geometry comes from ImagePositionPatient,
ImageOrientationPatient and PixelSpacing, per frame for multi-frame files, so it is the same
whichever decoder produced the pixels. Library errors are left to the caller
(:mod:`napari_paraspinal.core.io`), which turns them into :class:`InputError`.

The parts live in :mod:`.dicom_files` (which files are DICOM, and their headers),
:mod:`.dicom_frames` (each frame's geometry and rescale) and :mod:`.dicom_pixels` (decoding);
this module groups the frames of a file or folder into series and sorted stacks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from .dicom_files import is_dicom_candidate, read_header
from .dicom_frames import Frame, frames_of, int_or
from .dicom_pixels import decode_frame, frame_meta, read_complete
from .errors import InputError
from .geometry import Geometry, SliceImage

_GROUPING_TAGS = ["SeriesInstanceUID", "SeriesNumber", "Rows"]


def group_series(files: Sequence[Path]) -> tuple[list[str | None], list[Path]]:
    """Series UIDs of the image files (ordered by series number) and the unreadable files.

    Non-image objects (reports, structure sets) are skipped; unreadable files are returned
    so the caller can report them rather than drop them silently.
    """
    numbers: dict[str | None, int] = {}
    unreadable: list[Path] = []
    for f in files:
        try:
            ds = read_header(f, _GROUPING_TAGS)
        except Exception:  # reported when the file itself is read
            unreadable.append(f)
            continue
        if "Rows" not in ds:
            continue
        uid = str(ds.SeriesInstanceUID) if ds.get("SeriesInstanceUID") else None
        number = int_or(ds.get("SeriesNumber"), 0)
        numbers[uid] = min(numbers.get(uid, number), number)
    order = sorted(numbers, key=lambda u: (numbers[u], u or ""))
    return order, unreadable


class DicomStack:
    """The slices of a DICOM input (one file or one series), sorted along the normal."""

    def __init__(self, source: str, frames: list[Frame], kind: str) -> None:
        if not frames:
            raise InputError(source, "holds no readable DICOM images")
        self.source = source
        self.kind = kind
        self.frames = sorted(frames, key=lambda fr: (fr.position, fr.instance, str(fr.path),
                                                     fr.frame or 0))
        self._check_consistent()
        first = self.frames[0]
        self.shape = (first.rows, first.cols)
        self.normal = first.direction[:, 2]
        self.skipped = 0  # unreadable files left out of a series

    def _check_consistent(self) -> None:
        first = self.frames[0]
        for fr in self.frames[1:]:
            if (fr.rows, fr.cols) != (first.rows, first.cols):
                raise InputError(self.source, "its images differ in size "
                                 f"({first.rows}×{first.cols} and {fr.rows}×{fr.cols}); "
                                 "open the files one by one")
            if not np.allclose(fr.direction, first.direction, atol=1e-3):
                raise InputError(self.source, "its images have different orientations "
                                 "(e.g. a localizer); open the files one by one")

    def positions(self) -> list[float]:
        """Position of each slice along the normal (mm), ascending."""
        return [fr.position for fr in self.frames]

    def read(self, k: int, spacing: tuple[float, float] | None) -> SliceImage:
        """Decode slice ``k`` (rescaled, float32) with its geometry, notes and metadata."""
        fr = self.frames[k]
        notes: list[str] = []
        ds = read_complete(fr.path, self.source)
        data = decode_frame(fr, ds, self.source, notes)
        geometry = Geometry(
            shape=(fr.rows, fr.cols),
            spacing=(*self._pixel_spacing(fr, spacing, notes), self._thickness(fr)),
            origin=tuple(float(v) for v in (fr.origin or (0.0, 0.0, 0.0))),
            direction=tuple(float(v) for v in fr.direction.ravel()),
        )
        if fr.origin is None or fr.orientation is None:
            notes.append("no patient position/orientation in the DICOM header: assumed the "
                         "radiological view (patient's right on the image's left, anterior "
                         "at the top)")
        shared = sum(abs(p - fr.position) < 1e-3 for p in self.positions())
        if self.skipped:
            notes.append(f"{self.skipped} file(s) in this folder could not be read and were "
                         "left out")
        if shared > 1:
            notes.append(f"{shared} images of this series lie at this position (e.g. echoes "
                         "or contrasts); choose another by slice index")
        return SliceImage(data=data, geometry=geometry, source=self.source, notes=notes,
                          meta=frame_meta(ds, fr))

    def _pixel_spacing(self, fr: Frame, spacing: tuple[float, float] | None,
                       notes: list[str]) -> tuple[float, float]:
        if fr.pixel_spacing is not None:
            if spacing is not None:
                notes.append("the given pixel spacing was not used: the DICOM header has one")
            return fr.pixel_spacing
        if spacing is None:
            raise InputError(self.source, "has no PixelSpacing in its DICOM header; pass an "
                                          "explicit pixel spacing (spacing=(sx, sy) in mm)")
        notes.append(f"no PixelSpacing in the DICOM header: used the given spacing "
                     f"{spacing[0]:g} × {spacing[1]:g} mm")
        return spacing

    def _thickness(self, fr: Frame) -> float:
        """Distance between neighbouring slices when there are several, else the header's."""
        steps = np.diff(np.unique(np.round(self.positions(), 4)))
        if steps.size:
            return float(np.median(steps))
        return fr.thickness or 1.0


def open_file(path: Path) -> DicomStack:
    """One DICOM file; a multi-frame file is a volume of its frames."""
    ds = read_header(path)
    _require_image(path, ds)
    frames = frames_of(path, ds)
    kind = "multi-frame DICOM" if len(frames) > 1 else "DICOM file"
    return DicomStack(str(path), frames, kind)


def open_series(folder: Path, series_uid: str | None, source: str) -> DicomStack:
    """The images of one series directly inside ``folder`` (all of them when it holds one).

    Files whose header cannot be read are skipped (and counted in a note): a folder listed
    as input reports them as separate cases.
    """
    by_uid, skipped = _scan_folder(str(folder), folder.stat().st_mtime_ns)
    if series_uid is not None:
        frames = by_uid.get(series_uid)
        if not frames:
            raise InputError(source, "no readable DICOM images of this series in the folder")
    elif len(by_uid) > 1:
        raise InputError(source, f"holds {len(by_uid)} DICOM series; open them one by one "
                                 "(listing the folder as input gives one case per series)")
    else:
        frames = next(iter(by_uid.values()), [])
    stack = DicomStack(source, frames, "DICOM series")
    stack.skipped = skipped
    return stack


def folder_series(folder: Path) -> dict[str | None, list[Frame]]:
    """Frames of each DICOM series directly in ``folder`` by series UID, from the one cached
    header scan that :func:`open_series` also uses."""
    return _scan_folder(str(folder), folder.stat().st_mtime_ns)[0]


@functools.lru_cache(maxsize=4)
def _scan_folder(folder: str, mtime_ns: int) -> tuple[dict[str | None, list[Frame]], int]:
    """Frames of every image file directly in ``folder`` by series UID, and the number of
    unreadable files; cached so the series of one folder share a single scan."""
    by_uid: dict[str | None, list[Frame]] = {}
    skipped = 0
    for f in sorted(p for p in Path(folder).iterdir()
                    if p.is_file() and not p.name.startswith(".") and is_dicom_candidate(p)):
        try:
            ds = read_header(f)
            frames = frames_of(f, ds) if "Rows" in ds else []
        except Exception:
            skipped += 1
            continue
        if frames:
            uid = str(ds.SeriesInstanceUID) if ds.get("SeriesInstanceUID") else None
            by_uid.setdefault(uid, []).extend(frames)
    return by_uid, skipped


def _require_image(path: Path, ds: Dataset) -> None:
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(path, "is a DICOM file without an image (e.g. a report or a "
                               "structure set)")
