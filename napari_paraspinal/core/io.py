"""Read axial slices and label maps from DICOM, NIfTI, NRRD, MetaImage, PNG, TIFF and JPEG.

Every input becomes a stack of slices sorted along the slice normal; one of them is chosen
(by index, by nearest position in mm, or the middle one, with a note) and returned as a
:class:`SliceImage` in LPS world coordinates. Any bad input — missing, empty, truncated or
corrupt files, unsupported dimensions, colour, absurd spacing, oversized images — raises
:class:`InputError` naming the file and the problem; library exceptions never escape.

NIfTI pixels are read with nibabel because SimpleITK silently fills a truncated NIfTI with
zeros; geometry of 3-D NIfTI, NRRD and MetaImage comes from SimpleITK's header reader (RAS to
LPS, sform/qform); 2-D NIfTI geometry comes from nibabel's affine, which SimpleITK would cut
down to 2-D. Inputs are listed (folders walked, special files refused) by :mod:`.listing`,
whose names are re-exported here.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io as _bytes_io
import logging
import operator
import os
import re
import stat
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from . import dicom, raster
from .errors import InputError
from .geometry import Geometry, SliceImage
from .labels import NUM_CLASSES, convention_note
from .listing import ITK as _ITK
from .listing import NIFTI as _NIFTI
from .listing import SUPPORTED as _SUPPORTED
from .listing import InputRef, Listing, expand_inputs, list_inputs, stat_input
from .listing import format_of as _format_of

__all__ = ["MAX_SIZE", "MAX_SPACING_MM", "MIN_SPACING_MM", "InputRef", "Listing", "SliceInfo",
           "describe_error", "expand_inputs", "image_stem", "is_supported", "labelled_pairs",
           "list_inputs", "list_slices", "read_labels", "read_slice", "validate_slice"]

_log = logging.getLogger("napari_paraspinal.inputs")

#: Largest in-plane size accepted (pixels along each axis).
MAX_SIZE = 4096
#: Largest plausible in-plane pixel spacing (mm).
MAX_SPACING_MM = 10.0
#: Smallest plausible in-plane pixel spacing (mm): finer than any MRI; a smaller value is a
#: broken header (or metres/microns mistaken for mm), not an image to measure in mm².
MIN_SPACING_MM = 0.05


@dataclass(frozen=True)
class SliceInfo:
    """One slice of an input: its index and its position along the slice normal (mm)."""

    index: int
    position: float


class _Stack(Protocol):
    """What every format reader offers: the size first, then one slice at a time."""

    kind: str
    shape: tuple[int, int]
    normal: np.ndarray

    def positions(self) -> list[float]: ...

    def read(self, k: int, spacing: tuple[float, float] | None) -> SliceImage: ...


# --------------------------------------------------------------------------- public API


def is_supported(path: str | os.PathLike[str]) -> bool:
    """True for an existing file of a supported type (by suffix or DICOM preamble) or a
    folder directly holding DICOM files. Never raises: napari asks it about anything."""
    try:
        p = Path(path)
        if p.is_dir():
            return dicom.folder_has_dicom(p)
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
    stack = _open(_as_ref(source))
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
    ref = _as_ref(source)
    stack = _open(ref)
    given = _spacing_arg(ref, spacing)
    k, notes = _choose(ref, stack, index, position)
    with _reading(ref):
        image = stack.read(k, given)
    _check_geometry(str(ref), image.geometry)
    image.notes[:0] = notes
    image.notes.extend(_axial_note(image.geometry))
    image.meta.update(slice_index=k, slice_count=len(stack.positions()),
                      slice_position_mm=float(stack.positions()[k]))
    return image


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
    if _format_of(ref.path) not in ("nifti", "itk"):
        raise InputError(ref.path, "label maps must be NIfTI, NRRD or MetaImage files")
    stack = _open(ref)
    if index is None and geometry is not None:
        index = _nearest(stack, float(np.dot(geometry.origin, stack.normal)))
    k, _ = _choose(ref, stack, index, None)
    with _reading(ref):
        image = stack.read(k, None)
    if geometry is not None and not image.geometry.same_grid(geometry):
        raise InputError(ref.path, "the labels do not lie on the image grid: "
                                   + _grid_difference(image.geometry, geometry))
    data = _label_values(ref.path, image.data)
    note = stack.label_note() if isinstance(stack, _VolumeStack) else convention_note(data)
    if note is not None and notes is not None:
        notes.append(note)
    elif note is not None:
        _note_once(str(ref.path), st.st_mtime_ns, st.st_size, note)
    return data


@functools.lru_cache(maxsize=256)
def _note_once(source: str, mtime_ns: int, size: int, note: str) -> None:
    """Log a note about a file once per version of the file (not once per slice read)."""
    _log.warning("%s: %s", source, note)


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


def validate_slice(image: SliceImage) -> None:
    """Refuse a slice that cannot be segmented: implausible geometry (size, spacing,
    thickness, direction), non-finite pixels or no content (all zero or constant)."""
    _check_geometry(image.source, image.geometry)
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


# --------------------------------------------------------------------------- dispatch


def _as_ref(source: str | os.PathLike[str] | InputRef) -> InputRef:
    return source if isinstance(source, InputRef) else InputRef(Path(source))


def _open(ref: InputRef) -> _Stack:
    """The stack of an input (cached while the file or folder is unchanged)."""
    st = stat_input(ref.path, str(ref))  # a pipe or device is refused before any open
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise InputError(str(ref), "is empty (0 bytes)")
    stack = _open_cached(ref, st.st_mtime_ns, st.st_size)
    _check_size(str(ref), stack.shape)
    return stack


@functools.lru_cache(maxsize=2)
def _open_cached(ref: InputRef, mtime_ns: int, size: int) -> _Stack:
    with _reading(ref):
        if ref.path.is_dir():
            return dicom.open_series(ref.path, ref.series_uid, str(ref))
        fmt = _format_of(ref.path)
        if fmt is None:
            suffix = "".join(ref.path.suffixes[-2:]) or "(none)"
            raise InputError(ref.path, f"unsupported file type {suffix!r} (supported: "
                                       f"{_SUPPORTED})")
        if fmt == "dicom":
            return dicom.open_file(ref.path)
        if fmt == "raster":
            return raster.RasterStack(ref.path)
        return _VolumeStack(ref.path, fmt)


@contextlib.contextmanager
def _reading(ref: InputRef) -> Iterator[None]:
    """Turn any library error while reading into an InputError naming the input."""
    try:
        yield
    except InputError:
        raise
    except Exception as err:
        raise InputError(str(ref), "cannot be read: the file is truncated, corrupt or not "
                                   f"what its name says ({describe_error(err)})") from err


def describe_error(err: BaseException) -> str:
    """The informative part of a library error, without SimpleITK's source locations and
    object addresses (NRRD puts its detail on the last line)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in")]
    if not lines:
        return type(err).__name__
    text = _clean(lines[0])
    if len(lines) > 1 and lines[-1].startswith("[nrrd]"):
        text = f"{text} {_clean(lines[-1])}"
    return text[:200]


def _clean(line: str) -> str:
    for prefix in ("sitk::ERROR:", "ITK ERROR:", "[nrrd]"):
        line = line.removeprefix(prefix).strip()
    return re.sub(r"\w+\(0x[0-9a-fA-F]+\):\s*", "", line)


# --------------------------------------------------------------------------- choosing


def _choose(ref: InputRef, stack: _Stack, index: int | None, position: float | None
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


def _by_position(ref: InputRef, stack: _Stack, position: float) -> tuple[int, list[str]]:
    positions = np.asarray(stack.positions())
    steps = np.diff(np.unique(positions))
    half = (float(np.median(steps)) if steps.size else 1.0) / 2
    if not np.isfinite(position) or not (
        positions.min() - half <= position <= positions.max() + half
    ):
        raise InputError(str(ref), f"position {position:g} mm is out of range: slices lie "
                                   f"from {positions.min():.1f} to {positions.max():.1f} mm")
    k = _nearest(stack, position)
    return k, [f"took slice index {k} of {positions.size}, at {positions[k]:.1f} mm, the "
               f"nearest to the requested {position:g} mm"]


def _nearest(stack: _Stack, position: float) -> int:
    return int(np.argmin(np.abs(np.asarray(stack.positions()) - position)))


# --------------------------------------------------------------------------- checks


def _spacing_arg(ref: InputRef, spacing: tuple[float, float] | None
                 ) -> tuple[float, float] | None:
    if spacing is None:
        return None
    try:
        sx, sy = (float(v) for v in spacing)
    except (TypeError, ValueError):
        raise InputError(str(ref), f"spacing must be two numbers (sx, sy) in mm, got "
                                   f"{spacing!r}") from None
    return sx, sy


def _check_size(source: str, shape: tuple[int, int]) -> None:
    rows, cols = shape
    if rows > MAX_SIZE or cols > MAX_SIZE:
        raise InputError(source, f"is {cols} × {rows} pixels in-plane, larger than the "
                                 f"{MAX_SIZE} × {MAX_SIZE} limit")
    if rows < 1 or cols < 1:
        raise InputError(source, f"has no pixels ({cols} × {rows})")


def _check_spacing(source: str, spacing: Sequence[float]) -> None:
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


def _check_geometry(source: str, g: Geometry) -> None:
    _check_size(source, g.shape)
    _check_spacing(source, g.spacing)
    m = g.matrix
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(g.origin))):
        raise InputError(source, "has a non-finite origin or direction in its header")
    i, j = m[:, 0], m[:, 1]
    if not (np.allclose([np.linalg.norm(i), np.linalg.norm(j)], 1.0, atol=1e-2)
            and abs(float(np.dot(i, j))) < 1e-2):
        raise InputError(source, "its row and column directions are not orthonormal "
                                 "(sheared or degenerate orientation in the header)")


def _axial_note(g: Geometry) -> list[str]:
    """A note when the slice plane is far from axial (the model expects axial slices)."""
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(g.matrix[2, 2]))))))
    if tilt <= 45:
        return []
    return [f"the slice plane is {tilt:.0f}° from axial; this is probably not an axial slice"]


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


# --------------------------------------------------------------------------- volumes


@dataclass(frozen=True)
class _Header:
    """Size (i, j, k), spacing, origin and direction of a 2-D or 3-D image in LPS."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]


class _VolumeStack:
    """NIfTI, NRRD or MetaImage: the header first (size and spacing checked before any
    pixels are read), the pixels once on the first slice asked for."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        if fmt == "nifti":
            raw = _nifti_header(path)
            _check_nifti_header(path, raw)
            self.header = _sitk_header(path) if int(raw["dim"][0]) >= 3 else _nifti2d_header(raw)
        else:
            self.header = _sitk_header(path)
        nx, ny, _ = self.header.size
        self.format_name = _format_name(path)
        self.kind = f"{self.format_name} volume"
        self.shape = (ny, nx)
        self.normal = np.asarray(self.header.direction).reshape(3, 3)[:, 2]
        _check_spacing(str(path), self.header.spacing)
        self._voxels: np.ndarray | None = None
        self._label_note: list[str | None] = []  # computed once, on the whole file

    def label_note(self) -> str | None:
        """The file's :func:`.labels.convention_note` as a label map, over all its slices
        (one slice holding only spine and disc is no sign of another convention)."""
        if not self._label_note:
            if self._voxels is None:
                self._voxels = (_load_nifti(self.path) if self.fmt == "nifti"
                                else _load_itk(self.path))
            self._label_note.append(convention_note(self._voxels))
        return self._label_note[0]

    def positions(self) -> list[float]:
        h = self.header
        start = float(np.dot(h.origin, self.normal))
        return [start + k * h.spacing[2] for k in range(h.size[2])]

    def read(self, k: int, spacing: tuple[float, float] | None) -> SliceImage:
        h = self.header
        if self._voxels is None:
            self._voxels = _load_nifti(self.path) if self.fmt == "nifti" else _load_itk(self.path)
        notes: list[str] = []
        data = _grey_slice(self.path, self._voxels[k], notes)
        m = np.asarray(h.direction).reshape(3, 3)
        origin = np.asarray(h.origin) + k * h.spacing[2] * m[:, 2]
        geometry = Geometry(shape=self.shape, spacing=h.spacing,
                            origin=tuple(float(v) for v in origin), direction=h.direction)
        if spacing is not None:
            notes.append("the given pixel spacing was not used: the file has its own")
        return SliceImage(data=data, geometry=geometry, source=str(self.path), notes=notes,
                          meta={"format": self.format_name})


def _format_name(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_NIFTI):
        return "NIfTI"
    return "NRRD" if name.endswith((".nrrd", ".nhdr")) else "MetaImage"


def _grey_slice(path: Path, pixels: np.ndarray, notes: list[str]) -> np.ndarray:
    if pixels.ndim == 3:
        rgb = pixels[..., :3]
        if rgb.shape[-1] < 3 or not (np.array_equal(rgb[..., 0], rgb[..., 1])
                                     and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(path, "is a colour (RGB) or multi-component image; only "
                                   "greyscale images can be segmented")
        notes.append("colour image with identical R, G and B channels: used one channel")
        pixels = rgb[..., 0]
    if np.iscomplexobj(pixels):
        raise InputError(path, "has complex-valued pixels; only real greyscale images can "
                               "be segmented")
    return np.asarray(pixels, dtype=np.float32)


def _sitk_header(path: Path) -> _Header:
    """Geometry from SimpleITK's header reader (no pixels); 4-D only with one volume."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    dim, size = reader.GetDimension(), reader.GetSize()
    if dim > 3 and int(np.prod(size[3:])) > 1:
        raise InputError(path, f"is {dim}-D with {int(np.prod(size[3:]))} volumes; only 2-D "
                               "or 3-D images can be read")
    if dim < 2:
        raise InputError(path, f"is {dim}-D; only 2-D or 3-D images can be read")
    d = np.eye(3)
    n = min(dim, 3)
    d[:n, :n] = np.asarray(reader.GetDirection()).reshape(dim, dim)[:n, :n]
    pad = 3 - n
    return _Header(
        size=tuple(int(v) for v in size[:n]) + (1,) * pad,
        spacing=tuple(float(v) for v in reader.GetSpacing()[:n]) + (1.0,) * pad,
        origin=tuple(float(v) for v in reader.GetOrigin()[:n]) + (0.0,) * pad,
        direction=tuple(float(v) for v in d.ravel()),
    )


def _nifti_header(path: Path) -> nib.Nifti1Header:
    """The raw NIfTI-1/2 header, unchecked (nibabel's checks would silently 'fix' pixdim)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read(540)
    if len(raw) < 348:
        raise InputError(path, "cannot be read: the file is truncated or corrupt (incomplete "
                               "NIfTI header)")
    sizes = {struct.unpack("<i", raw[:4])[0], struct.unpack(">i", raw[:4])[0]}
    kind = nib.Nifti1Header if 348 in sizes else nib.Nifti2Header if 540 in sizes else None
    if kind is None:
        raise InputError(path, "is not a NIfTI file (bad header size)")
    return kind.from_fileobj(_bytes_io.BytesIO(raw), check=False)


def _check_nifti_header(path: Path, hdr: nib.Nifti1Header) -> None:
    """Dimensions, size and spacing (pixdim and the sform) before any pixels are read."""
    dim, pixdim = hdr["dim"], hdr["pixdim"]
    ndim = int(dim[0])
    if not 2 <= ndim <= 7:
        raise InputError(path, f"has {ndim} dimensions; only 2-D or 3-D images can be read")
    extra = int(np.prod(dim[4: ndim + 1])) if ndim >= 4 else 1
    if extra > 1:
        raise InputError(path, f"is 4-D with {extra} volumes; only 2-D or 3-D images can be "
                               "read")
    _check_size(str(path), (int(dim[2]), int(dim[1])))
    stacked = ndim >= 3 and int(dim[3]) > 1  # the third spacing only matters then

    def spacing(values: Sequence[float]) -> tuple[float, float, float]:
        return float(values[0]), float(values[1]), float(values[2]) if stacked else 1.0

    _check_pixdim(path, "pixdim", spacing(pixdim[1:4]))
    if int(hdr["sform_code"]) > 0:
        _check_pixdim(path, "sform", spacing(np.linalg.norm(hdr.get_sform()[:3, :3], axis=0)))


def _check_pixdim(path: Path, where: str, spacing: Sequence[float]) -> None:
    try:
        _check_spacing(str(path), spacing)
    except InputError as err:
        raise InputError(path, f"{err.problem} (NIfTI header {where})") from None


def _nifti2d_header(hdr: nib.Nifti1Header) -> _Header:
    """Geometry of a 2-D NIfTI from its affine (RAS → LPS); SimpleITK would drop z."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ hdr.get_best_affine()
    cols = affine[:3, :3]
    norms = np.linalg.norm(cols, axis=0)
    d = cols / np.where(norms > 0, norms, 1.0)
    if norms[2] == 0:
        d[:, 2] = np.cross(d[:, 0], d[:, 1])
    dim = hdr["dim"]
    return _Header(
        size=(int(dim[1]), int(dim[2]), 1),
        spacing=(float(norms[0]), float(norms[1]), float(norms[2]) or 1.0),
        origin=tuple(float(v) for v in affine[:3, 3]),
        direction=tuple(float(v) for v in d.ravel()),
    )


def _load_nifti(path: Path) -> np.ndarray:
    """All voxels as (k, j, i[, c]); nibabel raises on truncated data (SimpleITK does not)."""
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    channels: tuple[int, ...] = ()
    if data.dtype.names:  # RGB24 / RGBA32 NIfTI
        data = np.stack([data[name] for name in data.dtype.names], axis=-1)
        channels = (data.shape[-1],)
    spatial = tuple(img.shape[:3]) + (1,) * (3 - len(img.shape[:3]))
    data = data.reshape(spatial + channels)  # trailing singleton dimensions were checked
    return np.swapaxes(data, 0, 2)


def _load_itk(path: Path) -> np.ndarray:
    """All voxels as (k, j, i[, c]) through SimpleITK."""
    img = sitk.ReadImage(str(path))
    data = sitk.GetArrayFromImage(img)
    comps = img.GetNumberOfComponentsPerPixel()
    spatial = data.shape[:-1] if comps > 1 else data.shape
    if len(spatial) == 2:
        data = data[np.newaxis]
    elif len(spatial) == 4:
        data = data[0]
    return data
