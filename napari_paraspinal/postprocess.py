"""Clean-up of a label map: each muscle kept as its largest connected piece.

A muscle is one connected region on an axial slice; stray islands of a muscle label far from
it (in bowel, in noise behind the back) are errors, and they inflate areas. The same step
the MuscleMap models take (KeepLargestConnectedComponent). The pixels dropped go to the
next most probable class, so no pixel is left without a label for a reason other than the
model's own probabilities.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R

#: Structures kept as one piece (the spine's posterior elements and the disc may be split).
ONE_PIECE = (PS_L, PS_R, MF_L, MF_R, ES_L, ES_R)
#: Names of the choices a model card may give (``preprocessing.postprocess``).
CHOICES = ("none", "largest_component")


def largest_components(probabilities: np.ndarray, labels: np.ndarray | None = None,
                       values: tuple[int, ...] = ONE_PIECE) -> np.ndarray:
    """The argmax of ``probabilities`` (C×H×W) with each of ``values`` kept as its largest
    4-connected piece; pixels of dropped pieces take their next most probable class."""
    probs = np.array(probabilities, dtype=np.float32, copy=True)
    labels = probs.argmax(0) if labels is None else np.asarray(labels)
    for _ in range(3):  # a pixel moved to another muscle may leave an island of that one
        changed = False
        for value in values:
            pieces, n = ndi.label(labels == value)
            if n <= 1:
                continue
            sizes = np.bincount(pieces.ravel())[1:]
            drop = (pieces > 0) & (pieces != 1 + int(np.argmax(sizes)))
            probs[value][drop] = -1.0
            labels[drop] = probs[:, drop].argmax(0)
            changed = True
        if not changed:
            break
    return labels.astype(np.uint8)
