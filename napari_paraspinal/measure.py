"""Cross-sectional areas from a label map on its native grid, in mm².

Area = pixel count × the pixel area from the image's spacing; nothing is resampled, so the
numbers are exact for the label map given. Fat separation adds lean/fat columns later.
"""

from __future__ import annotations

import numpy as np

from .core.geometry import Geometry
from .core.labels import LABELS, NUM_CLASSES


def csa_mm2(labels: np.ndarray, geometry: Geometry) -> dict[int, float]:
    """Area of every label 1–8 in mm² (0.0 for an absent label)."""
    labels = np.asarray(labels)
    if labels.shape != geometry.shape:
        raise ValueError(f"labels {labels.shape} are not on the image grid {geometry.shape}")
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=NUM_CLASSES)
    if counts.size > NUM_CLASSES:
        raise ValueError(f"label values above {NUM_CLASSES - 1}")
    return {lab.value: float(counts[lab.value] * geometry.pixel_area_mm2) for lab in LABELS}


def asymmetry_pct(left: float, right: float) -> float | None:
    """Left-right asymmetry, 100·(L−R)/mean(L, R); None when both are zero."""
    mean = (left + right) / 2.0
    return None if mean == 0 else 100.0 * (left - right) / mean


def csa_columns(labels: np.ndarray, geometry: Geometry) -> dict[str, float | None]:
    """Spreadsheet columns ``<short>_csa_mm2`` and ``<muscle>_asym_pct`` for one case."""
    areas = csa_mm2(labels, geometry)
    row: dict[str, float | None] = {
        f"{lab.short}_csa_mm2": round(areas[lab.value], 3) for lab in LABELS
    }
    by_short = {lab.short: areas[lab.value] for lab in LABELS}
    for muscle in ("PS", "MF", "ES"):
        asym = asymmetry_pct(by_short[f"{muscle}_L"], by_short[f"{muscle}_R"])
        row[f"{muscle}_asym_pct"] = None if asym is None else round(asym, 3)
    return row
