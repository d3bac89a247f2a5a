"""PNG, TIFF and JPEG slices: greyscale pixels with a spacing the user gives.

These formats carry no patient geometry, so the spacing must be explicit and the slice gets
the canonical geometry (identity direction, origin 0): columns run toward the patient's left
and rows toward posterior, i.e. the picture is assumed to be in the radiological view.
Library errors are left to the caller (:mod:`napari_paraspinal.core.io`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from .errors import InputError
from .geometry import Geometry, SliceImage

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_GREY_MODES = ("1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "P", "PA", "LA", "La")


def _is_tiff(path: Path) -> bool:
    return path.name.lower().endswith((".tif", ".tiff"))


class RasterStack:
    """A single-slice raster image; its size is read from the header before any pixels."""

    kind = "image"
    normal = np.array([0.0, 0.0, 1.0])

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shape = _tiff_shape(path) if _is_tiff(path) else _pil_shape(path)

    def positions(self) -> list[float]:
        return [0.0]

    def read(self, k: int, spacing: tuple[float, float] | None) -> SliceImage:
        """The greyscale slice on the canonical grid with the given (column, row) spacing."""
        kind = self.path.suffix.lstrip(".").upper()
        if spacing is None:
            raise InputError(self.path, f"a {kind} file has no pixel spacing; it needs an "
                                        "explicit pixel spacing (spacing=(sx, sy) in mm)")
        notes: list[str] = []
        data = _read_tiff(self.path, notes) if _is_tiff(self.path) else _read_pil(
            self.path, notes)
        notes.append(f"{kind} has no geometry: used the given pixel spacing {spacing[0]:g} × "
                     f"{spacing[1]:g} mm and assumed the radiological view (patient's right "
                     "on the image's left, anterior at the top)")
        if kind in ("JPG", "JPEG"):
            notes.append("JPEG is lossy: pixel intensities are approximate")
        geometry = Geometry(shape=data.shape, spacing=(spacing[0], spacing[1], 1.0))
        return SliceImage(data=data.astype(np.float32), geometry=geometry,
                          source=str(self.path), notes=notes, meta={"format": kind})


def _pil_shape(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            raise InputError(path, f"has {frames} frames; only single images are supported")
        width, height = im.size
    return height, width


def _read_pil(path: Path, notes: list[str]) -> np.ndarray:
    with Image.open(path) as im:
        mode = im.mode
        if mode in _GREY_MODES:
            return np.asarray(im.convert("L") if mode == "1" else im)
        if mode not in _COLOUR_MODES:
            raise InputError(path, f"has an unsupported pixel mode {mode!r}")
        if mode in ("LA", "La"):
            notes.append("alpha channel ignored")
            return np.asarray(im.getchannel("L"))
        rgb = np.asarray(im.convert("RGBA").convert("RGB") if mode in ("P", "PA")
                         else im.convert("RGB"))
    return _single_channel(path, rgb, notes)


def _tiff_shape(path: Path) -> tuple[int, int]:
    with tifffile.TiffFile(path) as tif:
        pages = len(tif.pages)
        if pages > 1:
            raise InputError(path, f"has {pages} pages; only single-page TIFFs are supported")
        page = tif.pages.first
        return int(page.imagelength), int(page.imagewidth)


def _read_tiff(path: Path, notes: list[str]) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        data = page.asarray()
        axes = page.axes
    if "S" in axes:  # samples (colour channels) last
        data = np.moveaxis(data, axes.index("S"), -1)
    data = np.squeeze(data)
    if data.ndim == 2:
        return data
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        return _single_channel(path, data[..., :3], notes)
    raise InputError(path, f"has image data of shape {data.shape}; expected a 2-D greyscale "
                           "image")


def _single_channel(path: Path, rgb: np.ndarray, notes: list[str]) -> np.ndarray:
    """One channel of a colour image whose R, G and B are identical; refuse real colour."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if not (np.array_equal(r, g) and np.array_equal(r, b)):
        raise InputError(path, "is a colour (RGB) image; only greyscale images can be "
                               "segmented")
    notes.append("colour image with identical R, G and B channels: used one channel")
    return np.ascontiguousarray(r)
