"""Builders of real input files for the I/O tests: DICOM series and multi-frame files made
from pydicom's bundled MR_small.dcm, and NIfTI files with hand-set (even broken) headers."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def bundled(name: str) -> Path:
    """A pydicom test file that ships with pydicom (never downloaded)."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with this pydicom"
    return Path(path)


def mr_small() -> Dataset:
    return pydicom.dcmread(bundled("MR_small.dcm"))


def tilted_orientation(degrees: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and normal of an axial plane tilted about x."""
    t = np.radians(degrees)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(t), np.sin(t)])
    return row, col, np.cross(row, col)


def write_series(folder: Path, n: int = 5, *, step: float = 3.0, tilt: float = 10.0,
                 pixel_spacing: tuple[float, float] = (0.5, 0.8),
                 series_uid: str | None = None, description: str = "T2 axial"
                 ) -> tuple[str, list[np.ndarray], list[np.ndarray]]:
    """A series of ``n`` slices ``step`` mm apart, files named in reverse position order
    and instance numbers shuffled, so only sorting by position gives the right order.

    Returns the series UID, each slice's origin and pixels, in position order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    uid = series_uid or generate_uid()
    row, col, normal = tilted_orientation(tilt)
    base = np.array([-80.0, -90.0, 20.0])
    origins, pixels = [], []
    instances = np.random.default_rng(0).permutation(n) + 1
    for k in range(n):
        ds = mr_small()
        origin = base + k * step * normal
        data = (ds.pixel_array.astype(np.int16) + 100 * k).astype(np.int16)
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = description
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = int(instances[k])
        ds.ImagePositionPatient = [float(v) for v in origin]
        ds.ImageOrientationPatient = [float(v) for v in (*row, *col)]
        ds.PixelSpacing = list(pixel_spacing)
        ds.PixelData = data.tobytes()
        ds.save_as(folder / f"IM{n - k:04d}")  # no suffix: found by the DICM preamble
        origins.append(origin)
        pixels.append(data)
    return uid, origins, pixels


def write_multiframe(path: Path, offsets: list[float]) -> list[np.ndarray]:
    """An enhanced-style multi-frame file: frame f lies ``offsets[f]`` mm along z and holds
    MR_small's pixels plus 10·f, with per-frame rescale slope 2. Returns raw frames."""
    ds = mr_small()
    frames = [(ds.pixel_array.astype(np.int16) + 10 * f) for f in range(len(offsets))]
    ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
    per_frame = []
    for off in offsets:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [float(v) for v in ipp + [0.0, 0.0, off]]
        item.PlanePositionSequence = Sequence([pos])
        scale = Dataset()
        scale.RescaleSlope = 2
        scale.RescaleIntercept = -5
        item.PixelValueTransformationSequence = Sequence([scale])
        per_frame.append(item)
    shared = Dataset()
    orient = Dataset()
    orient.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    shared.PlaneOrientationSequence = Sequence([orient])
    measures = Dataset()
    measures.PixelSpacing = [0.4, 0.6]
    measures.SliceThickness = 2.0
    shared.PixelMeasuresSequence = Sequence([measures])
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, tag)
    ds.NumberOfFrames = len(offsets)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(frames).astype(np.int16).tobytes()
    ds.save_as(path)
    return frames


def write_raw_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None,
                    pixdim: tuple[float, ...] | None = None,
                    shape: tuple[int, ...] | None = None) -> Path:
    """Write a NIfTI-1 byte by byte so a bad header survives (nibabel's save repairs pixdim).

    ``shape`` may claim more voxels than ``data`` holds (a header for a huge image).
    """
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(data.dtype)
    hdr.set_data_shape(shape or data.shape)
    if affine is not None:
        hdr.set_sform(affine, code=1)
        hdr.set_qform(affine, code=1)
    if pixdim is not None:
        hdr["pixdim"][1: 1 + len(pixdim)] = pixdim
    hdr["vox_offset"] = 352
    payload = hdr.binaryblock + b"\0" * 4 + np.asfortranarray(data).tobytes(order="F")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(payload)
    return path


def lps_world(affine: np.ndarray, i: float, j: float, k: float = 0.0) -> np.ndarray:
    """World (LPS) position of voxel (i, j, k) under a nibabel (RAS) affine."""
    return (RAS_TO_LPS @ affine @ np.array([i, j, k, 1.0]))[:3]
