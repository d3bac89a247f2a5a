"""napari writer: a labels layer back to NIfTI on the exact grid of the image it was drawn on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..core.atomic import atomic_path
from ..core.writers import write_labels as write_labels_slice
from .layers import GEOMETRY_KEY, native_labels


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write ``data`` (a labels layer) with the geometry kept in its metadata.

    A layer without paraspinal geometry (not opened through this plugin) is refused by
    returning no paths, so napari can offer another writer.
    """
    metadata = meta.get("metadata") or {}
    if GEOMETRY_KEY not in metadata:
        return []
    labels, geoms = native_labels(np.asarray(data), metadata)
    if not path.lower().endswith((".nii", ".nii.gz")):
        path = f"{path}.nii.gz"
    if labels.ndim == 2:
        write_labels_slice(labels, geoms[0], path)
        return [path]
    volume = sitk.GetImageFromArray(np.ascontiguousarray(labels, dtype=np.uint8))
    first = geoms[0]
    step = np.linalg.norm(np.subtract(geoms[1].origin, first.origin)) if len(geoms) > 1 else 1.0
    volume.SetSpacing((first.spacing[0], first.spacing[1], float(step)))
    volume.SetOrigin(first.origin)
    volume.SetDirection(first.direction)
    with atomic_path(Path(path)) as tmp:
        sitk.WriteImage(volume, str(tmp), useCompression=True)
    return [path]
