"""Turn geometry-carrying slices into napari layer data and back (no Qt, no napari import).

Layers show the canonical radiological view (patient right on the viewer's left, anterior up)
with ``scale`` in mm. The native geometry and the reorientation travel in the layer metadata,
so a labels layer painted over the image is written back on the file's exact grid.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from ..core.geometry import Geometry, SliceImage
from ..core.labels import label_colors
from ..core.orientation import Reorientation, to_canonical

GEOMETRY_KEY = "paraspinal_geometry"
REORIENT_KEY = "paraspinal_reorientation"


def image_layer(slices: list[SliceImage], name: str) -> tuple[np.ndarray, dict, str]:
    """One image layer (2-D, or a stack of slices of the same grid) in canonical view."""
    canon = [to_canonical(s) for s in slices]
    data = np.stack([c.data for c, _ in canon]) if len(canon) > 1 else canon[0][0].data
    g = canon[0][0].geometry
    scale = [g.spacing[1], g.spacing[0]]
    translate = [g.origin[1], g.origin[0]]
    if len(canon) > 1:
        scale.insert(0, _slice_step(slices))
        translate.insert(0, 0.0)
    meta = {
        GEOMETRY_KEY: [s.geometry.to_dict() for s in slices],
        REORIENT_KEY: asdict(canon[0][1]),
        "source": slices[0].source,
        "notes": [n for s in slices for n in s.notes],
    }
    kwargs = {"name": name, "scale": scale, "translate": translate, "metadata": meta,
              "colormap": "gray"}
    return data, kwargs, "image"


def labels_layer(labels: np.ndarray, image_kwargs: dict, name: str = "paraspinal labels"
                 ) -> tuple[np.ndarray, dict, str]:
    """A labels layer on the same view as an image layer, from native-grid labels."""
    r = Reorientation(**image_kwargs["metadata"][REORIENT_KEY])
    kwargs = {
        "name": name,
        "scale": image_kwargs["scale"],
        "translate": image_kwargs["translate"],
        "metadata": dict(image_kwargs["metadata"]),
        "colormap": label_colors(),
    }
    return r.apply(np.asarray(labels, np.uint8)), kwargs, "labels"


def native_labels(data: np.ndarray, metadata: dict) -> tuple[np.ndarray, list[Geometry]]:
    """Undo the display reorientation: label arrays on the file's grid, with their geometry."""
    r = Reorientation(**metadata[REORIENT_KEY])
    geoms = [Geometry.from_dict(d) for d in metadata[GEOMETRY_KEY]]
    return r.undo(np.asarray(data)), geoms


def _slice_step(slices: list[SliceImage]) -> float:
    """Distance between neighbouring slices along the normal (mm)."""
    a, b = (np.asarray(s.geometry.origin) for s in slices[:2])
    step = float(np.linalg.norm(b - a))
    return step if step > 0 else float(slices[0].geometry.spacing[2])

