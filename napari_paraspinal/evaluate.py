"""Accuracy of a model on labelled slices, measured on each slice's native grid.

Per case and label: Dice, recall, PPV, mean (symmetric) boundary distance and HD95 in mm,
using the slice's own pixel spacing; then a Table-1-style summary (mean ± sd per label and
over all labels). Labels the reference does not annotate are left out, not scored as errors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .core.geometry import Geometry
from .core.labels import BY_VALUE
from .jobs import ProgressFn, report
from .nets.metrics import assd_mm, hausdorff95_mm
from .segment import Model, segment_slice

METRICS = ("dice", "recall", "ppv", "assd_mm", "hd95_mm")


def score_case(pred: np.ndarray, truth: np.ndarray, geometry: Geometry,
               labels: Sequence[int] = tuple(range(1, 9))) -> list[dict]:
    """One row per label present in ``truth``: overlap and boundary distances in mm."""
    sampling = (geometry.spacing[1], geometry.spacing[0])  # (rows, cols)
    rows = []
    for value in labels:
        t = truth == value
        if not t.any():
            continue
        p = pred == value
        inter = float((p & t).sum())
        rows.append({
            "label": BY_VALUE[value].short,
            "dice": 2 * inter / (p.sum() + t.sum()),
            "recall": inter / t.sum(),
            "ppv": inter / p.sum() if p.any() else 0.0,
            "assd_mm": assd_mm(pred, truth, value, sampling),
            "hd95_mm": hausdorff95_mm(pred, truth, value, sampling),
        })
    return rows


def evaluate_folder(data_dir: str | os.PathLike[str], model: Model, level: str = "auto",
                    progress: ProgressFn | None = None) -> list[dict]:
    """Segment every image of ``data_dir/images`` and score it against ``data_dir/labels``
    (progress: stage ``evaluate``, one step per image)."""
    from .core.io import image_stem, labelled_pairs, read_labels, read_slice

    pairs = labelled_pairs(data_dir)
    rows: list[dict] = []
    for k, (ref, label_path) in enumerate(pairs):
        stem = image_stem(ref.path)
        image = read_slice(ref)
        truth = read_labels(label_path, image.geometry)
        seg = segment_slice(image, model, level)
        for row in score_case(seg.labels, truth, image.geometry):
            rows.append({"case": stem, "level": seg.preprocessed.level,
                         "flagged": seg.preprocessed.registration.flagged, **row})
        report(progress, "evaluate", k + 1, len(pairs), stem)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± sd of every metric per label and over all labels (finite values only)."""
    out = []
    groups = sorted({r["label"] for r in rows}, key=lambda s: [v.short for v in
                                                                BY_VALUE.values()].index(s))
    for label in [*groups, "all"]:
        sel = [r for r in rows if label in ("all", r["label"])]
        entry: dict = {"label": label, "n": len(sel)}
        for m in METRICS:
            values = np.array([r[m] for r in sel], float)
            values = values[np.isfinite(values)]
            entry[m] = (f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"
                        if len(values) else "n/a")
        out.append(entry)
    return out
