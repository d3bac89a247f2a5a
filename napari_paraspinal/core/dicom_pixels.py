"""Decoding one DICOM frame: its rescaled greyscale pixels and the header fields kept with them.

Pixels are decoded by pydicom (pylibjpeg covers JPEG, JPEG-LS, JPEG 2000 and RLE); SimpleITK/GDCM
is the fallback for streams pydicom cannot decode. Truncated pixel data, palette and true colour
images are an :class:`InputError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array

from .dicom_files import has_dicom_magic
from .dicom_frames import Frame, int_or
from .errors import InputError


def read_complete(path: Path, source: str) -> Dataset:
    """The whole dataset; refused when its pixel data are cut off (a decoder may not notice:
    pylibjpeg returns a half-decoded JPEG-LS frame from a truncated file without error)."""
    ds = pydicom.dcmread(path, force=not has_dicom_magic(path))
    if not any(kw in ds for kw in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InputError(source, f"cannot be read: {path.name} is truncated or corrupt (its "
                                 "pixel data are missing or incomplete)")
    return ds


def decode_frame(fr: Frame, ds: Dataset, source: str, notes: list[str]) -> np.ndarray:
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


def frame_meta(ds: Dataset, fr: Frame) -> dict:
    """Useful header fields (patient fields included; exports anonymise them)."""
    return {
        "format": "DICOM",
        "modality": str(ds.get("Modality", "")),
        "series_description": str(ds.get("SeriesDescription", "")),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "series_number": int_or(ds.get("SeriesNumber"), 0),
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
