"""Write slices and label maps on exactly their grid (NIfTI, NRRD or MHA by suffix)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .atomic import atomic_path
from .geometry import Geometry, SliceImage
from .labels import NUM_CLASSES


def write_image(image: SliceImage, path: str | os.PathLike[str]) -> Path:
    """Write an intensity slice (float32) as a one-slice 3-D image with its geometry."""
    data = np.asarray(image.data, dtype=np.float32)
    with atomic_path(path) as tmp:
        sitk.WriteImage(image.geometry.to_sitk(data), str(tmp), useCompression=True)
    return Path(path)


def write_labels(labels: np.ndarray, geometry: Geometry, path: str | os.PathLike[str]) -> Path:
    """Write a label map (values 0–8, uint8) on ``geometry``'s grid."""
    labels = np.asarray(labels)
    if labels.shape != geometry.shape:
        raise ValueError(f"label shape {labels.shape} does not match grid {geometry.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"label values must be 0–{NUM_CLASSES - 1}")
    with atomic_path(path) as tmp:
        sitk.WriteImage(geometry.to_sitk(labels.astype(np.uint8)), str(tmp), useCompression=True)
    return Path(path)
