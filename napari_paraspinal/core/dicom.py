"""DICOM files and series: find the series in a folder, order their slices along the slice
normal and decode one slice with its geometry.

Headers are read with pydicom (without pixel data) so listing a series is cheap. Pixels are
decoded by pydicom (pylibjpeg covers JPEG, JPEG-LS, JPEG 2000 and RLE); SimpleITK/GDCM is the
fallback for streams pydicom cannot decode. Geometry comes from ImagePositionPatient,
ImageOrientationPatient and PixelSpacing, per frame for multi-frame files, so it is the same
whichever decoder produced the pixels. Library errors are left to the caller
(:mod:`napari_paraspinal.core.io`), which turns them into :class:`InputError`.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from .errors import InputError
from .geometry import Geometry, SliceImage

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_GROUPING_TAGS = ["SeriesInstanceUID", "SeriesNumber", "Rows"]
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _head(path: str | os.PathLike[str], n: int) -> bytes:
    """The first ``n`` bytes of a regular file (b"" for anything else: a pipe would block)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def has_dicom_magic(path: str | os.PathLike[str]) -> bool:
    """True when the file has the DICOM preamble marker ("DICM" at byte 128); never raises."""
    head = _head(path, 132)
    return len(head) == 132 and head[128:] == b"DICM"


def looks_like_bare_dataset(path: str | os.PathLike[str]) -> bool:
    """True when a file without the preamble starts like a DICOM data set (little-endian
    group 0002 or 0008, explicit or implicit VR), as some scanners and tools write them."""
    head = _head(path, 8)
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00") or head[3] != 0:
        return False
    if head[4:6].isalpha() and head[4:6].isupper():  # explicit VR
        return True
    length = int.from_bytes(head[4:8], "little")  # implicit VR: a short element
    return length < 1024 and length % 2 == 0


def is_dicom_candidate(path: Path) -> bool:
    """A file that should be read as DICOM: DICOM suffix, preamble, or a bare data set
    (never DICOMDIR)."""
    if path.name.upper() == "DICOMDIR":
        return False
    return (path.name.lower().endswith(DICOM_SUFFIXES) or has_dicom_magic(path)
            or looks_like_bare_dataset(path))


def folder_has_dicom(folder: Path) -> bool:
    """True when ``folder`` directly holds at least one DICOM file; never raises."""
    try:
        with os.scandir(folder) as entries:
            return any(
                e.is_file() and not e.name.startswith(".") and is_dicom_candidate(Path(e.path))
                for e in entries
            )
    except OSError:
        return False


def read_header(path: Path, tags: Sequence[str] | None = None) -> Dataset:
    """The header (no pixel data) of a DICOM file; InputError when it is not DICOM.

    Files without the preamble are read with ``force`` and accepted when they parse to a
    DICOM object (an image, or an object with a SOP class).
    """
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes)")
    magic = has_dicom_magic(path)
    if tags and not magic:
        tags = [*tags, "Rows", "Columns", "SOPClassUID"]  # what tells DICOM from noise
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=not magic,
                             specific_tags=list(tags) if tags else None)
    except Exception as err:
        if magic:
            raise
        raise InputError(path, "is not a DICOM file (no 'DICM' marker and no readable "
                               "DICOM header)") from err
    if not magic and not (("Rows" in ds and "Columns" in ds) or "SOPClassUID" in ds):
        raise InputError(path, "is not a DICOM file (no 'DICM' marker and no readable "
                               "DICOM header)")
    return ds


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
        number = _int(ds.get("SeriesNumber"), 0)
        numbers[uid] = min(numbers.get(uid, number), number)
    order = sorted(numbers, key=lambda u: (numbers[u], u or ""))
    return order, unreadable


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
    n = max(_int(ds.get("NumberOfFrames"), 1), 1)
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
            instance=_int(ds.get("InstanceNumber"), 0),
        )
        if offsets is not None and frame.origin is not None:
            shifted = np.asarray(frame.origin) + offsets[f] * frame.direction[:, 2]
            frame = replace(frame, origin=tuple(float(v) for v in shifted))
        frames.append(frame)
    return frames


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
        ds = _read_complete(fr.path, self.source)
        data = _decode(fr, ds, self.source, notes)
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
                          meta=_meta(ds, fr))

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


def _read_complete(path: Path, source: str) -> Dataset:
    """The whole dataset; refused when its pixel data are cut off (a decoder may not notice:
    pylibjpeg returns a half-decoded JPEG-LS frame from a truncated file without error)."""
    ds = pydicom.dcmread(path, force=not has_dicom_magic(path))
    if not any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(source, f"cannot be read: {path.name} is truncated or corrupt (its "
                                 "pixel data are missing or incomplete)")
    return ds


def _decode(fr: Frame, ds: Dataset, source: str, notes: list[str]) -> np.ndarray:
    """Rescaled greyscale pixels of one frame; pydicom first, SimpleITK/GDCM as fallback."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric.startswith("PALETTE"):
        raise InputError(source, "is a palette-colour image; only greyscale images can be "
                                 "segmented")
    try:
        raw = pixel_array(ds, index=fr.frame).astype(np.float64)
        data = raw * fr.slope + fr.intercept
    except Exception as err:
        try:
            volume = sitk.GetArrayFromImage(sitk.ReadImage(str(fr.path)))  # GDCM rescales
        except Exception:
            raise err from None
        data = volume[fr.frame or 0].astype(np.float64)
        notes.append("pixels decoded by GDCM (pydicom could not decode this stream)")
    if photometric == "MONOCHROME1":
        notes.append("MONOCHROME1: low values display bright; pixel values were kept as stored")
    return _greyscale(data, source, notes).astype(np.float32)


def _greyscale(data: np.ndarray, source: str, notes: list[str]) -> np.ndarray:
    """A 2-D array; colour only when its channels are identical (then one is kept)."""
    if data.ndim == 2:
        return data
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        rgb = data[..., :3]
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0],
                                                                       rgb[..., 2]):
            notes.append("colour image with identical R, G and B channels: used one channel")
            return rgb[..., 0]
        raise InputError(source, "is a colour (RGB) image; only greyscale images can be "
                                 "segmented")
    raise InputError(source, f"has pixel data of unexpected shape {data.shape}")


def _meta(ds: Dataset, fr: Frame) -> dict:
    """Useful header fields (patient fields included; exports anonymise them)."""
    return {
        "format": "DICOM",
        "modality": str(ds.get("Modality", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "series_number": _int(ds.get("SeriesNumber"), 0),
        "instance_number": fr.instance,
        "frame": fr.frame,
        "file": str(fr.path),
        "slice_position_mm": fr.position,
        "patient_id": str(ds.get("PatientID", "")),
        "patient_name": str(ds.get("PatientName", "")),
        "study_date": str(ds.get("StudyDate", "")),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "transfer_syntax": str(getattr(ds.get("file_meta"), "TransferSyntaxUID", "")),
    }


def _require_image(path: Path, ds: Dataset) -> None:
    if "Rows" not in ds or "Columns" not in ds:
        raise InputError(path, "is a DICOM file without an image (e.g. a report or a "
                               "structure set)")


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


def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
