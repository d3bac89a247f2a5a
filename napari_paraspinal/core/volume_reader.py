"""NIfTI, NRRD and MetaImage files as stacks of slices (:class:`VolumeStack`).

The header is read and checked first (dimensions, size, spacing), the pixels only once, on
the first slice asked for. NIfTI pixels are read with nibabel because SimpleITK silently
fills a truncated NIfTI with zeros; geometry of 3-D NIfTI, NRRD and MetaImage comes from
SimpleITK's header reader (RAS to LPS, sform/qform); 2-D NIfTI geometry comes from
nibabel's affine, which SimpleITK would cut down to 2-D.
"""

from __future__ import annotations

import gzip
import io as _bytes_io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .geometry import Geometry, SliceImage
from .input_checks import check_size, check_spacing
from .labels import convention_note
from .listing import NIFTI

__all__ = ["VolumeStack"]


@dataclass(frozen=True)
class _Header:
    """Size (i, j, k), spacing, origin and direction of a 2-D or 3-D image in LPS."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]


class VolumeStack:
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
        check_spacing(str(path), self.header.spacing)
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
    if name.endswith(NIFTI):
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
    check_size(str(path), (int(dim[2]), int(dim[1])))
    stacked = ndim >= 3 and int(dim[3]) > 1  # the third spacing only matters then

    def spacing(values: Sequence[float]) -> tuple[float, float, float]:
        return float(values[0]), float(values[1]), float(values[2]) if stacked else 1.0

    _check_pixdim(path, "pixdim", spacing(pixdim[1:4]))
    if int(hdr["sform_code"]) > 0:
        _check_pixdim(path, "sform", spacing(np.linalg.norm(hdr.get_sform()[:3, :3], axis=0)))


def _check_pixdim(path: Path, where: str, spacing: Sequence[float]) -> None:
    try:
        check_spacing(str(path), spacing)
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
