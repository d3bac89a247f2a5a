"""Overlap and surface-distance metrics on label maps (numpy, any dimension, spacing-aware).

Conventions (the same as MONAI's ``compute_dice`` / ``compute_hausdorff_distance`` /
``compute_average_surface_distance``, against which ``tests/test_metrics.py`` checks them):

* Dice of a label is NaN when the label is absent from both prediction and truth (0/0: nothing
  to score, so averages skip it rather than count it as perfect or failed); absent from one
  only, it is 0. (MONAI's ``ignore_empty=True`` also gives NaN when only the prediction has it.)
* The surface of a mask is its pixels with at least one 4-neighbour (6 in 3-D) outside it, the
  image border counting as outside: ``mask & ~binary_erosion(mask)``, MONAI's definition.
* Surface distances are exact Euclidean distances in mm (``spacing`` per array axis, rows
  first) from each surface pixel of one mask to the nearest surface pixel of the other.
* HD95 is the larger of the two directed 95th percentiles (linear interpolation); ASSD is the
  mean over the union of both directed distance sets. Both are NaN when the label is absent
  from both masks and inf when it is absent from one only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

FOREGROUND = tuple(range(1, 9))


def _pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction and truth differ in shape: {pred.shape} vs {truth.shape}")
    return pred, truth


def dice_per_label(
    pred: np.ndarray, truth: np.ndarray, labels: Iterable[int] = FOREGROUND
) -> dict[int, float]:
    """Dice ``2|P & T| / (|P| + |T|)`` of each label; NaN where the label is in neither map."""
    pred, truth = _pair(pred, truth)
    out: dict[int, float] = {}
    for label in labels:
        p, t = pred == label, truth == label
        denom = int(p.sum()) + int(t.sum())
        out[int(label)] = 2.0 * int((p & t).sum()) / denom if denom else float("nan")
    return out


def mean_dice(pred: np.ndarray, truth: np.ndarray, labels: Iterable[int] = FOREGROUND) -> float:
    """Mean Dice over the labels present in either map (NaN if none is)."""
    values = [v for v in dice_per_label(pred, truth, labels).values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask (face-connected erosion, border counts as outside)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _spacing(spacing: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    values = (float(spacing),) * ndim if np.isscalar(spacing) else tuple(map(float, spacing))
    if len(values) != ndim or not all(v > 0 for v in values):
        raise ValueError(f"spacing must be {ndim} positive values, got {spacing!r}")
    return values


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, label: int, spacing: float | Sequence[float] = 1.0
) -> tuple[np.ndarray, np.ndarray] | None:
    """Directed surface distances (mm) pred->truth and truth->pred of one label.

    None when the label is missing from either map (distances undefined).
    """
    pred, truth = _pair(pred, truth)
    sampling = _spacing(spacing, pred.ndim)
    sp, st = surface(pred == label), surface(truth == label)
    if not sp.any() or not st.any():
        return None
    to_truth = ndimage.distance_transform_edt(~st, sampling=sampling)[sp]
    to_pred = ndimage.distance_transform_edt(~sp, sampling=sampling)[st]
    return to_truth, to_pred


def _empty_value(pred: np.ndarray, truth: np.ndarray, label: int) -> float:
    """NaN when the label is absent from both maps, inf when from one only."""
    in_pred, in_truth = bool((pred == label).any()), bool((truth == label).any())
    return float("nan") if not in_pred and not in_truth else float("inf")


def hausdorff95_mm(
    pred: np.ndarray,
    truth: np.ndarray,
    label: int,
    spacing: float | Sequence[float] = 1.0,
    percentile: float = 95.0,
) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (see the module doc)."""
    pred, truth = _pair(pred, truth)
    d = surface_distances(pred, truth, label, spacing)
    if d is None:
        return _empty_value(pred, truth, label)
    return float(max(np.percentile(d[0], percentile), np.percentile(d[1], percentile)))


def assd_mm(
    pred: np.ndarray, truth: np.ndarray, label: int, spacing: float | Sequence[float] = 1.0
) -> float:
    """Average symmetric surface distance in mm (see the module doc)."""
    pred, truth = _pair(pred, truth)
    d = surface_distances(pred, truth, label, spacing)
    if d is None:
        return _empty_value(pred, truth, label)
    return float(np.concatenate(d).mean())
