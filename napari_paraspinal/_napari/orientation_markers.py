"""Orientation letters on the canvas: which image edge is the patient's R, L, A and P.

One helper points layer per viewer (named :data:`NAME`, marked with the helper role so layer
pickers, measurements and exports leave it out) holds four invisible points, one at the
middle of each edge of the paraspinal images, whose text is the letter. The letters come from
each image's stored geometry and display reorientation (:mod:`.layers`), so they show the
view as it is: R on the left, L on the right, A at the top, P at the bottom for the
canonical radiological view. The layer is 2-D, so napari shows it on every plane of a stack.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Points

from ..core.geometry import Geometry
from ..core.orientation import Reorientation, axis_codes, reorient_geometry
from .layers import GEOMETRY_KEY, REORIENT_KEY
from .qt_common import is_paraspinal
from .slices import ROLE_KEY

NAME = "orientation"
ROLE = "orientation"
#: The letter at the other end of an axis.
OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}
TEXT = {"string": "{letter}", "color": "yellow", "size": 14}
#: How far inside the image edge the letters sit, as a fraction of its size.
INSET = 0.04


def is_marker_layer(layer: Any) -> bool:
    """The orientation helper layer made by :func:`update_markers`."""
    return isinstance(layer, Points) and (layer.metadata or {}).get(ROLE_KEY) == ROLE


def view_letters(metadata: dict) -> tuple[str, str, str, str]:
    """Letters at the (left, right, top, bottom) edges of an image shown with ``metadata``."""
    native = Geometry.from_dict(metadata[GEOMETRY_KEY][0])
    shown = reorient_geometry(native, Reorientation(**metadata[REORIENT_KEY]))
    cols, rows = axis_codes(shown)  # where column and row indices increase, e.g. "LP"
    return OPPOSITE[cols], cols, OPPOSITE[rows], rows


def marker_points(layers: list[Any]) -> tuple[np.ndarray, list[str]]:
    """World (row, col) of the letters at mid-edges of the images' union, and the letters.

    The letters are those of the last image (the one most recently opened); empty when
    there is no image.
    """
    if not layers:
        return np.zeros((0, 2)), []
    lows, highs = [], []
    for layer in layers:
        shape = np.asarray(layer.data.shape[-2:], float)
        scale = np.asarray(layer.scale[-2:], float)
        start = np.asarray(layer.translate[-2:], float) - scale / 2  # pixel edges
        lows.append(start)
        highs.append(start + shape * scale)
    low, high = np.min(lows, axis=0), np.max(highs, axis=0)
    mid, inset = (low + high) / 2, (high - low) * INSET
    points = np.array([
        [mid[0], low[1] + inset[1]],  # left edge
        [mid[0], high[1] - inset[1]],  # right edge
        [low[0] + inset[0], mid[1]],  # top edge
        [high[0] - inset[0], mid[1]],  # bottom edge
    ])
    return points, list(view_letters(layers[-1].metadata))


def marked_images(viewer: Any) -> list[Any]:
    """The paraspinal image layers whose edges are marked."""
    return [ly for ly in viewer.layers if isinstance(ly, Image) and is_paraspinal(ly)]


def update_markers(viewer: Any) -> Points | None:
    """Add, move or remove the viewer's orientation layer to match its paraspinal images.

    The layer is kept on top of the list (drawn over the images) and never left selected.
    """
    images = marked_images(viewer)
    layer = next((ly for ly in viewer.layers if is_marker_layer(ly)), None)
    if not images:
        if layer is not None:
            viewer.layers.remove(layer)
        return None
    points, letters = marker_points(images)
    if layer is None:
        selected, active = list(viewer.layers.selection), viewer.layers.selection.active
        layer = Points(points, ndim=2, name=NAME, size=1, face_color="transparent",
                       border_color="transparent", border_width=0, features={"letter": letters},
                       text=TEXT, metadata={ROLE_KEY: ROLE})
        viewer.layers.append(layer)
        viewer.layers.selection.clear()
        viewer.layers.selection.update(selected)
        viewer.layers.selection.active = active
    else:
        layer.data = points
        layer.features = {"letter": letters}
        layer.text = TEXT
        top = len(viewer.layers) - 1
        if viewer.layers.index(layer) != top:
            viewer.layers.move(viewer.layers.index(layer), top + 1)
    return layer


def letter_positions(layer: Points) -> dict[str, tuple[float, float]]:
    """Each letter's world (row, col) on the orientation layer."""
    rows = np.asarray(layer.data, float)
    return {str(t): (float(r[-2]), float(r[-1])) for t, r in zip(
        layer.features["letter"], rows, strict=True)}
