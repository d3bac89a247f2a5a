"""The registration-free frame: a slice resampled to 1 mm and placed by its body alone.

Atlas registration (the paper's way, :mod:`.registration`) fails on scans unlike its atlas,
and a failed fit wrecks the network's input. The body frame cannot fail that way: the slice
is put in canonical orientation (exact swaps/flips from its direction matrix), resampled to
256×256 pixels of 1 mm, its body's left-right centre at the frame's centre and the body's
posterior edge (found in a band around the midline, so arms do not move it, on the solid
body, so noise and ghosts in the air do not: :func:`solid_body`) at ``FRAME_BACK_MM``
behind it. Only a translation: rotation, size and shape are the network's
job, and the training data vary them (:mod:`..synth.render` paints into this same frame).

The frame is an :class:`.atlas_space.AtlasMapping` like a registration's, so the way back to
the native grid (probabilities, linear, then argmax) is the same for both.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ..core.geometry import SliceImage
from ..core.orientation import canonical_reorientation, reorient_geometry
from .atlas_space import ATLAS_SIZE, AtlasMapping

FRAME_SIZE = ATLAS_SIZE
#: Where the body's posterior edge lands, mm behind the frame's centre (the frame reaches
#: 127.5 mm): room for the back with a margin, and 245 mm in front of it for the rest.
FRAME_BACK_MM = 118.0
#: Half-width of the band around the body's centre in which the posterior edge is sought.
BAND_MM = 40.0


def body_anchor(mask_canonical: np.ndarray, spacing: tuple[float, float]
                ) -> tuple[float, float]:
    """(x, y) in plane mm of the body's left-right centre and posterior edge.

    ``mask_canonical`` is the body mask in canonical orientation (rows toward posterior,
    columns toward the patient's left); ``spacing`` is (column, row) mm. An empty mask gives
    the image centre.
    """
    mask = np.asarray(mask_canonical, bool)
    rows, cols = mask.shape
    sx, sy = spacing
    if not mask.any():
        return ((cols - 1) / 2 * sx, (rows - 1) / 2 * sy)
    col_counts = mask.sum(0)
    cx = float(col_counts @ np.arange(cols) / col_counts.sum()) * sx
    band = np.abs(np.arange(cols) * sx - cx) <= BAND_MM
    band_rows = np.nonzero(mask[:, band].any(1))[0]
    if not band_rows.size:
        band_rows = np.nonzero(mask.any(1))[0]
    return cx, (float(band_rows.max()) + 0.5) * sy


def solid_body(data: np.ndarray, spacing: tuple[float, float], mask: np.ndarray
               ) -> np.ndarray:
    """The body as the anchor needs it: bright tissue (over a fifth of the body's 99th
    percentile) opened with a 4 mm disc, its pieces of at least 2 % of the body mask,
    closed and with holes filled.

    The body mask proper reaches into noise, ghosts and ringing in the air behind the back
    (real Dixon scans showed 20-50 mm of it), which would move the frame's anchor; thin
    lines do not survive the opening. Where nothing does, the body mask is used.
    """
    values = data[mask] if mask.any() else data.ravel()
    bright = data > 0.2 * float(np.percentile(values, 99))
    radius = max(1, int(round(4.0 / min(spacing))))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = np.hypot(yy * spacing[1] / min(spacing), xx * spacing[0] / min(spacing)) <= radius
    solid = ndi.binary_opening(bright, disc)
    pieces, n = ndi.label(solid)
    if n == 0:
        return mask
    # every sizeable piece: on T2w the dark muscles can cut the bright body into several
    sizes = np.bincount(pieces.ravel())[1:]
    keep = np.isin(pieces, 1 + np.nonzero(sizes >= 0.02 * max(int(mask.sum()), 1))[0])
    if not keep.any():
        return mask
    return ndi.binary_fill_holes(ndi.binary_closing(keep, disc, iterations=2))


def body_frame(image: SliceImage, mask: np.ndarray) -> AtlasMapping:
    """The frame mapping of a slice from its image and body mask (see the module doc)."""
    r = canonical_reorientation(image.geometry)
    g = reorient_geometry(image.geometry, r)
    data = r.apply(np.asarray(image.data, np.float32))
    solid = solid_body(data, g.spacing[:2], r.apply(np.asarray(mask, bool)))
    cx, back = body_anchor(solid, g.spacing[:2])
    t = sitk.AffineTransform(2)
    t.SetTranslation((float(cx), float(back - FRAME_BACK_MM)))
    return AtlasMapping(image.geometry, r, t)
