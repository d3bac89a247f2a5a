"""Quality checks of a segmentation itself, for slices that no registration vouches for.

The body frame (:mod:`.preprocess.frame`) has no fit whose quality could flag a slice, so
the result is checked instead, with rules any reader can verify: every multifidus and
erector spinae present, each in one piece, on its own side of the body, not wildly
asymmetric, predicted with confidence, and physically plausible (pixel spacing, an axial
plane, areas a body can have: :mod:`.plausibility`). A slice failing a rule is flagged
with the reason, and the flag travels with its numbers (``registration_flagged`` /
``registration_check`` columns, shared with the atlas frame's registration QC).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .core.geometry import Geometry
from .core.labels import BY_VALUE, ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from .core.orientation import canonical_reorientation
from .plausibility import label_areas, plausibility_reasons

PAIRS = ((MF_L, MF_R), (ES_L, ES_R))


@dataclass(frozen=True)
class QCConfig:
    """Thresholds of the segmentation checks."""

    min_area_mm2: float = 60.0  # smaller: the muscle counts as not found
    min_main_piece: float = 0.8  # share of a muscle's area in its largest piece
    max_asymmetry_pct: float = 60.0  # |L - R| / mean(L, R)
    min_confidence: float = 0.75  # mean highest class probability inside the muscles


def swapped_pairs(labels: np.ndarray, geometry: Geometry,
                  pairs: tuple[tuple[int, int], ...] = PAIRS + ((PS_L, PS_R),)) -> list[str]:
    """Muscles (``"MF"``, ...) whose left label lies on the patient's right of its right one."""
    canon = canonical_reorientation(geometry).apply(np.asarray(labels))
    out = []
    for left, right in pairs:
        cl, cr = np.nonzero(canon == left)[1], np.nonzero(canon == right)[1]
        # canonical columns run toward the patient's left
        if cl.size and cr.size and cl.mean() <= cr.mean():
            out.append(BY_VALUE[left].muscle)
    return out


def segmentation_qc(labels: np.ndarray, probabilities: np.ndarray, geometry: Geometry,
                    config: QCConfig | None = None) -> list[str]:
    """Reasons to check this segmentation (empty: it passes). ``labels`` and
    ``probabilities`` (C×rows×cols) are on the native grid of ``geometry``."""
    config = config or QCConfig()
    labels = np.asarray(labels)
    area = geometry.pixel_area_mm2
    r = canonical_reorientation(geometry)
    canon = r.apply(labels)
    reasons: list[str] = []
    present = {}
    for value in (MF_L, MF_R, ES_L, ES_R):
        mask = canon == value
        present[value] = mask.sum() * area >= config.min_area_mm2
        name = BY_VALUE[value].short
        if not present[value]:
            reasons.append(f"{name} not found")
            continue
        pieces, n = ndi.label(mask)
        if n > 1:
            largest = np.bincount(pieces.ravel())[1:].max()
            if largest < config.min_main_piece * mask.sum():
                reasons.append(f"{name} in pieces")
    reasons += [f"{m} left and right swapped" for m in swapped_pairs(labels, geometry)]
    for left, right in PAIRS:
        if not (present[left] and present[right]):
            continue
        a, b = (canon == left).sum(), (canon == right).sum()
        asym = 200.0 * abs(a - b) / (a + b)
        if asym > config.max_asymmetry_pct:
            reasons.append(f"{BY_VALUE[left].muscle} asymmetry {asym:.0f} %")
    muscles = np.isin(labels, (MF_L, MF_R, ES_L, ES_R))
    if muscles.any():
        confidence = float(np.asarray(probabilities).max(0)[muscles].mean())
        if confidence < config.min_confidence:
            reasons.append(f"low confidence ({confidence:.2f})")
    return reasons + plausibility_reasons(geometry, label_areas(labels, geometry))
