"""napari layers back to geometry-carrying slices, and native results back to the display.

Layers opened through this plugin show the canonical view and keep the file's geometry and
the display reorientation in their metadata (:mod:`.layers`). The widgets compute on the
native grid, as the CLI does, so every layer is turned back into :class:`SliceImage` planes
here. Duck-typed on ``.data`` / ``.metadata`` / ``.world_to_data``: no Qt, no napari import.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.geometry import Geometry, SliceImage
from ..core.orientation import Reorientation
from ..plausibility import CHECK, FLAG
from .layers import GEOMETRY_KEY, REORIENT_KEY

#: Labels-layer metadata written by the Segment widget.
MODEL_KEY = "paraspinal_model"  # "<card name> v<version>"
LEVEL_KEY = "paraspinal_level"  # one entry per plane: level used, None where not segmented
WRITTEN_KEY = "paraspinal_written"  # fingerprint of the data the widget last wrote
#: One entry per plane: the segmentation's QC columns (``registration_flagged``,
#: ``registration_check``, ...), None where the model did not label the plane.
QC_KEY = "paraspinal_qc"
#: What a helper layer is ("bias", "fat"), so layer pickers can leave it out.
ROLE_KEY = "paraspinal_role"


def has_geometry(layer: Any) -> bool:
    """True for a layer opened (or made) by this plugin, i.e. one that knows its grid."""
    meta = getattr(layer, "metadata", None) or {}
    return GEOMETRY_KEY in meta and REORIENT_KEY in meta


def reorientation(layer: Any) -> Reorientation:
    """The display reorientation stored with a layer."""
    _require_geometry(layer)
    return Reorientation(**layer.metadata[REORIENT_KEY])


def layer_slice(layer: Any, plane: int = 0) -> SliceImage:
    """One native slice of an image layer (``plane`` of a stack; ignored for a 2-D layer)."""
    _require_geometry(layer)
    data = np.asarray(layer.data)
    pixels = data if data.ndim == 2 else data[plane]
    geometry = Geometry.from_dict(layer.metadata[GEOMETRY_KEY][0 if data.ndim == 2 else plane])
    native = reorientation(layer).undo(np.array(pixels))  # a copy: workers read it
    return SliceImage(native, geometry, source=str(layer.metadata.get("source", layer.name)))


def layer_to_slices(layer: Any) -> list[SliceImage]:
    """The native slices behind an image layer: one for a 2-D layer, one per plane of a stack."""
    _require_geometry(layer)
    n = plane_count(layer)
    if n != len(layer.metadata[GEOMETRY_KEY]):
        raise ValueError(f"layer {layer.name!r} has {n} planes but geometry for "
                         f"{len(layer.metadata[GEOMETRY_KEY])}")
    return [layer_slice(layer, k) for k in range(n)]


def native_plane(labels_layer: Any, image_layer: Any, plane: int = 0) -> np.ndarray:
    """One plane of a labels layer drawn over an image layer, on the image's native grid."""
    data = np.asarray(labels_layer.data)
    shape = np.shape(image_layer.data)
    if data.shape != shape:
        raise ValueError(f"labels layer {labels_layer.name!r} {data.shape} does not match "
                         f"image layer {image_layer.name!r} {shape}")
    return reorientation(image_layer).undo(np.array(data if data.ndim == 2 else data[plane]))


def native_planes(labels_layer: Any, image_layer: Any) -> list[np.ndarray]:
    """Every plane of a labels layer on the image's native grid."""
    return [native_plane(labels_layer, image_layer, k) for k in range(plane_count(image_layer))]


def plane_count(layer: Any) -> int:
    """Planes in a layer: 1 for 2-D, the first axis of a stack."""
    shape = np.shape(layer.data)
    return 1 if len(shape) == 2 else int(shape[0])


def to_display(layer: Any, native: np.ndarray) -> np.ndarray:
    """A native-grid plane in the layer's display orientation."""
    return reorientation(layer).apply(native)


def current_plane(layer: Any, world_point: Sequence[float]) -> int:
    """Index of the plane of a stack shown at the viewer's point (0 for a 2-D layer)."""
    if np.ndim(layer.data) < 3:
        return 0
    k = int(round(float(layer.world_to_data(tuple(world_point))[0])))
    return int(np.clip(k, 0, np.shape(layer.data)[0] - 1))


def plane_qc(layer: Any, plane: int) -> dict | None:
    """The segmentation QC columns stored for one plane of a labels layer (None: none)."""
    entries = (getattr(layer, "metadata", None) or {}).get(QC_KEY) or []
    entry = entries[plane] if 0 <= plane < len(entries) else None
    return dict(entry) if entry else None


def check_text(qc: dict | None) -> str:
    """``"CHECK: <reasons>"`` for a flagged QC entry or row, else ``""``."""
    if not qc or not qc.get(FLAG):
        return ""
    reasons = str(qc.get(CHECK) or "")
    return f"CHECK: {reasons}" if reasons else "CHECK"


def flagged_planes(layers: Sequence[Any], world_point: Sequence[float]) -> list[str]:
    """One line per visible labels layer whose shown plane the segmentation QC flagged.

    What the viewer's banner shows, so a flagged slice is never on screen unmarked.
    """
    lines = []
    for layer in layers:
        if not getattr(layer, "visible", True) or not (layer.metadata or {}).get(QC_KEY):
            continue
        plane = current_plane(layer, world_point)
        text = check_text(plane_qc(layer, plane))
        if text:
            where = "" if np.ndim(layer.data) < 3 else f", plane {plane}"
            lines.append(f"{layer.name}{where}: {text}")
    return lines


def fingerprint(data: np.ndarray) -> str:
    """A short content hash of an array (shape and dtype included)."""
    a = np.ascontiguousarray(data)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.shape}{a.dtype}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def was_edited(data: np.ndarray, metadata: dict) -> bool:
    """True unless the data is exactly what the Segment widget last wrote into the layer.

    A layer the widget never wrote (ground truth, a user's own drawing) counts as edited, so
    it is never overwritten either.
    """
    return metadata.get(WRITTEN_KEY) != fingerprint(data)


def _require_geometry(layer: Any) -> None:
    if not has_geometry(layer):
        raise ValueError(f"layer {getattr(layer, 'name', layer)!r} carries no image geometry: "
                         "open the file with the napari-paraspinal reader")
