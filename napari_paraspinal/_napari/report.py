"""Measurements of an image layer and its labels layer as XLSX and CSV, with provenance.

One row per labelled plane (a 2-D layer has one), measured on the native grid through the
core's ``measure_slice`` with the same columns as the CLI's table; the provenance sheet says
which software, labels (layer, model, edited or not), level, bias correction and fat method
gave the numbers. :func:`collect` reads the layers (GUI thread); the rest is plain work.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.geometry import SliceImage
from ..export import write_csv, write_xlsx
from ..fat import FatConfig
from ..measure import geometry_columns, measure_slice, method_provenance
from ..preprocess.n4 import N4Config
from .slices import LEVEL_KEY, MODEL_KEY, layer_to_slices, native_planes, was_edited
from .tasks import bias_field


@dataclass
class ExportInput:
    """Copies of what is measured, taken from the layers so work can run off the GUI thread."""

    case: str
    source: str
    labels_name: str
    slices: list[SliceImage]
    labels: list[np.ndarray]
    planes: list[int]
    model: str = ""
    levels: list[str | None] = field(default_factory=list)
    edited: bool = False


def collect(image_layer: Any, labels_layer: Any) -> ExportInput:
    """Native slices and labels of the layers; a stack keeps only its labelled planes."""
    slices = layer_to_slices(image_layer)
    labels = native_planes(labels_layer, image_layer)
    planes = [k for k, lab in enumerate(labels) if len(labels) == 1 or np.any(lab)]
    if not planes:
        raise ValueError(f"labels layer {labels_layer.name!r} has no labelled plane")
    meta = labels_layer.metadata or {}
    levels = list(meta.get(LEVEL_KEY) or [])
    return ExportInput(
        case=str(image_layer.name),
        source=str(image_layer.metadata.get("source", image_layer.name)),
        labels_name=str(labels_layer.name),
        slices=slices,
        labels=labels,
        planes=planes,
        model=str(meta.get(MODEL_KEY, "")),
        levels=levels + [None] * (len(labels) - len(levels)),
        edited=bool(meta.get(MODEL_KEY)) and was_edited(np.asarray(labels_layer.data), meta),
    )


def labels_source(inp: ExportInput) -> str:
    """How the labels were made, e.g. ``layer 'x labels', model m v1, edited``."""
    parts = [f"layer {inp.labels_name!r}"]
    if inp.model:
        parts.append(f"model {inp.model}")
        parts.append("edited after segmentation" if inp.edited else "as segmented")
    return ", ".join(parts)


def measurement_sheets(inp: ExportInput, fat: FatConfig | None = None,
                       n4: N4Config | None = None) -> dict[str, list[dict]]:
    """The ``measurements`` rows and their ``provenance`` rows (``n4=None``: raw intensities)."""
    fat = fat or FatConfig()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows, provenance = [], []
    for k in inp.planes:
        image, g = inp.slices[k], inp.slices[k].geometry
        case = inp.case if len(inp.slices) == 1 else f"{inp.case} plane {k}"
        bias = bias_field(image, n4) if n4 is not None else None
        measured = measure_slice(image, inp.labels[k], fat, bias=bias)
        rows.append({
            "case": case,
            "plane": k,
            **geometry_columns(g),
            "label_source": labels_source(inp),
            "level": inp.levels[k] or "",
            **measured.row,
        })
        provenance.append({
            "case": case,
            "source": inp.source,
            **method_provenance(n4, fat),
            "labels": labels_source(inp),
            "level": inp.levels[k] or "",
            "time": stamp,
        })
    return {"measurements": rows, "provenance": provenance}


def write_report(sheets: dict[str, list[dict]], path: str | os.PathLike[str]) -> list[Path]:
    """``path`` as XLSX (suffix added when missing) and the measurements as CSV beside it."""
    xlsx = Path(path)
    if xlsx.suffix.lower() != ".xlsx":
        xlsx = xlsx.with_name(xlsx.name + ".xlsx")
    return [write_xlsx(sheets, xlsx), write_csv(sheets["measurements"], xlsx.with_suffix(".csv"))]


def write_measurements(inp: ExportInput, path: str | os.PathLike[str],
                       fat: FatConfig | None = None, n4: N4Config | None = None) -> list[Path]:
    """Measure collected layers and write XLSX and CSV (the Export widget's work)."""
    return write_report(measurement_sheets(inp, fat, n4), path)


def export_measurements(image_layer: Any, labels_layer: Any, path: str | os.PathLike[str],
                        fat: FatConfig | None = None, n4: N4Config | None = None
                        ) -> list[Path]:
    """Collect, measure and write in one call."""
    return write_measurements(collect(image_layer, labels_layer), path, fat, n4)
