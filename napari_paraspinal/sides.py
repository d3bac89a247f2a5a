"""Left and right from the spine's midline, not from the network's guess.

The network tells a muscle from its mirror image by what it has learnt of position; on
scans unlike its training data it sometimes puts a left label on the patient's right (a
stray piece, or a whole muscle). Which side a pixel is on is geometry, not appearance: in
the canonical frame (columns toward the patient's left, rows toward posterior) the midline
runs through the vertebral body or disc (DI) and the posterior elements (SP). Here the
network's probability of each muscle *pair* (left + right) is kept and given to the side
of the midline the pixel lies on, so a muscle can only be left on the patient's left.

The midline is the vertical line through the posterior elements (SP) found near the
frame's centre column (where the frame puts the body's left-right centre); without them,
through the multifidi there; without those, the centre column itself.
"""

from __future__ import annotations

import numpy as np

from .core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R, SP

#: (left, right) label pairs whose sides are set by the midline.
PAIRS = ((PS_L, PS_R), (MF_L, MF_R), (ES_L, ES_R))
#: The frame puts the body's left-right centre at its centre column; the spine is sought
#: within this many pixels (1 mm) of it, behind the frame's centre, so a posterior-elements
#: label the network puts in the bowel cannot move the midline.
WINDOW_MM = 25.0
#: A piece with more than this share of its pixels on each side is split at the midline.
SPLIT_SHARE = 0.2
#: Names of the choices (``--sides``): the network's own labels or the midline's.
CHOICES = ("network", "midline")
DEFAULT = "midline"


def _largest_piece_centroid(mask: np.ndarray, weight: np.ndarray) -> np.ndarray | None:
    """(row, col) centroid of the largest connected piece of ``mask``, weighted."""
    from scipy import ndimage as ndi  # here: the command line imports this module's names

    pieces, n = ndi.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(pieces.ravel())[1:]
    piece = pieces == 1 + int(np.argmax(sizes))
    if piece.sum() < 4:
        return None
    w = weight * piece
    rows, cols = np.indices(mask.shape)
    total = float(w.sum())
    return np.array([(w * rows).sum() / total, (w * cols).sum() / total])


def midline(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A point (row, col) on the midline and its unit direction (toward posterior), from
    class probabilities (C×H×W) in the canonical frame."""
    probs = np.asarray(probabilities, np.float32)
    labels = probs.argmax(0)
    rows, cols = np.indices(labels.shape)
    centre = (labels.shape[1] - 1) / 2
    window = (np.abs(cols - centre) <= WINDOW_MM) & (rows >= centre)
    point = _largest_piece_centroid((labels == SP) & window, probs[SP])
    mf = ((labels == MF_L) | (labels == MF_R)) & window
    if point is None and mf.sum() >= 4:  # both multifidi together: they flank the spine
        point = np.array([rows[mf].mean(), cols[mf].mean()])
    if point is None:
        point = np.array([centre, centre])
    return point, np.array([1.0, 0.0])


def left_side(shape: tuple[int, int], point: np.ndarray, direction: np.ndarray
              ) -> np.ndarray:
    """Boolean map of the pixels on the patient's left of the line (canonical frame)."""
    rows, cols = np.indices(shape, dtype=np.float32)
    # direction (dr, dc) points posterior; the patient's left is toward larger columns
    # when the line is vertical: cross(direction, pixel - point) > 0 there
    cross = direction[0] * (cols - point[1]) - direction[1] * (rows - point[0])
    return cross > 0


def assign_sides(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities (C×H×W, canonical frame) with each muscle pair's mass given to the
    side of the midline it lies on.

    Each connected piece of a pair (its left and right labels together) goes whole to the
    side holding most of it; a piece with over a fifth of its pixels on each side (the two
    multifidi meeting behind the spinous process) is split at the midline.
    """
    from scipy import ndimage as ndi

    probs = np.array(probabilities, dtype=np.float32, copy=True)
    if probs.shape[0] <= max(max(p) for p in PAIRS):
        return probs
    point, direction = midline(probs)
    left = left_side(probs.shape[1:], point, direction)
    labels = probs.argmax(0)
    for lab_left, lab_right in PAIRS:
        pieces, n = ndi.label((labels == lab_left) | (labels == lab_right))
        to_left = left.copy()
        for i, share in enumerate(ndi.mean(left, pieces, np.arange(1, n + 1)), start=1):
            if share >= 1 - SPLIT_SHARE or share <= SPLIT_SHARE:
                to_left[pieces == i] = share > 0.5
        pair = probs[lab_left] + probs[lab_right]
        probs[lab_left] = np.where(to_left, pair, 0.0)
        probs[lab_right] = np.where(to_left, 0.0, pair)
    return probs


def mirror_channels(num_classes: int) -> list[int]:
    """Channel order that exchanges each left label with its right one (a mirrored slice's
    probabilities read as the original's)."""
    order = list(range(num_classes))
    for left, right in PAIRS:
        if max(left, right) < num_classes:
            order[left], order[right] = right, left
    return order
