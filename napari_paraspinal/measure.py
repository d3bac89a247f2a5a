"""Cross-sectional areas from a label map on its native grid, in mm².

Area = pixel count × the pixel area from the image's spacing; nothing is resampled, so the
numbers are exact for the label map given. :func:`measure_slice` adds lean and fat areas and
fat % of the multifidus and erector spinae (:mod:`.fat`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .core.geometry import Geometry, SliceImage
from .core.labels import LABELS, NUM_CLASSES
from .fat import FatConfig, FatResult, separate_fat
from .preprocess.n4 import N4Config, n4_correct


def csa_mm2(labels: np.ndarray, geometry: Geometry) -> dict[int, float]:
    """Area of every label 1–8 in mm² (0.0 for an absent label)."""
    labels = np.asarray(labels)
    if labels.shape != geometry.shape:
        raise ValueError(f"labels {labels.shape} are not on the image grid {geometry.shape}")
    counts = np.bincount(labels.ravel().astype(np.int64), minlength=NUM_CLASSES)
    if counts.size > NUM_CLASSES:
        raise ValueError(f"label values above {NUM_CLASSES - 1}")
    return {lab.value: float(counts[lab.value] * geometry.pixel_area_mm2) for lab in LABELS}


def geometry_columns(geometry: Geometry) -> dict[str, float | int | str]:
    """The grid a case was measured on: matrix, spacing (mm), pixel area (mm²), orientation."""
    from .core.orientation import axis_codes

    g = geometry
    return {
        "rows": g.shape[0],
        "cols": g.shape[1],
        "spacing_col_mm": round(g.spacing[0], 6),
        "spacing_row_mm": round(g.spacing[1], 6),
        "slice_thickness_mm": round(g.spacing[2], 6),
        "pixel_area_mm2": round(g.pixel_area_mm2, 6),
        "orientation": axis_codes(g),
    }


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


@dataclass
class SliceMeasurement:
    """One slice's spreadsheet columns (areas, fat, asymmetry) and its fat mask."""

    row: dict[str, float | str | None]
    fat_mask: np.ndarray
    fat: FatResult


def measure_slice(image: SliceImage, labels: np.ndarray, fat: FatConfig | None = None,
                  n4: N4Config | None = None, bias: np.ndarray | None = None,
                  body: np.ndarray | None = None) -> SliceMeasurement:
    """CSA of every label, and lean/fat area and fat % of MF and ES, on the native grid.

    Fat is separated on bias-corrected intensities: ``image / bias`` when the bias field is
    known (the segmentation chain computed it), else N4 with ``n4`` (None: raw intensities).
    The CLI, the napari widgets and the app all measure through this one function.
    """
    g = image.geometry
    labels = np.asarray(labels)
    if bias is not None:
        corrected = np.asarray(image.data, np.float64) / bias
    elif n4 is not None:
        corrected = n4_correct(image, config=n4).corrected.data
    else:
        corrected = image.data
    result = separate_fat(corrected, labels, g, fat, body=body)
    row: dict[str, float | str | None] = {**csa_columns(labels, g), **result.columns()}
    return SliceMeasurement(row=row, fat_mask=result.fat_mask, fat=result)
