"""Measurements of an image layer and its labels layer as XLSX and CSV, with provenance.

One row per labelled plane (a 2-D layer has one), measured on the native grid through the
core's ``measure_slice`` and laid out by the CLI's own table builder
(:func:`..run_tables.table_sheets`): the same ``status``, ``slice`` and QC columns
(``registration_flagged`` / ``registration_check``: the segmentation's QC of the plane plus
the plausibility of its areas), a provenance row per image (software, labels: layer, model,
edited or not; bias correction, fat method, the flagged slices) and a per-level sheet when
levels are known. :func:`collect` reads the layers (GUI thread); the rest is plain work.
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
from ..levels import UNKNOWN
from ..measure import geometry_columns, measure_slice
from ..pipeline import CaseResult, RunConfig
from ..preprocess.n4 import N4Config
from ..run_tables import table_sheets
from .slices import (
    LEVEL_KEY,
    MODEL_KEY,
    layer_to_slices,
    native_planes,
    plane_qc,
    was_edited,
)
from .tasks import bias_field, row_qc


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
    qc: list[dict | None] = field(default_factory=list)  # per plane: segmentation QC columns


def collect(image_layer: Any, labels_layer: Any) -> ExportInput:
    """Native slices and labels of the layers; a stack keeps only its labelled planes."""
    slices = layer_to_slices(image_layer)
    labels = native_planes(labels_layer, image_layer)
    planes = [k for k, lab in enumerate(labels) if len(labels) == 1 or np.any(lab)]
    if not planes:
        raise ValueError(f"labels layer {labels_layer.name!r} has no labelled plane")
    meta = labels_layer.metadata or {}
    levels = list(meta.get(LEVEL_KEY) or [])
    qc = [plane_qc(labels_layer, k) for k in range(len(labels))]
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
        qc=qc,
    )


def labels_source(inp: ExportInput) -> str:
    """How the labels were made, e.g. ``layer 'x labels', model m v1, edited``."""
    parts = [f"layer {inp.labels_name!r}"]
    if inp.model:
        parts.append(f"model {inp.model}")
        parts.append("edited after segmentation" if inp.edited else "as segmented")
    return ", ".join(parts)


def label_status(inp: ExportInput) -> str:
    """``automatic`` (the model's labels as segmented), ``edited`` (changed since) or
    ``given`` (a layer the model did not write)."""
    if not inp.model:
        return "given"
    return "edited" if inp.edited else "automatic"


def measurement_sheets(inp: ExportInput, fat: FatConfig | None = None,
                       n4: N4Config | None = None) -> dict[str, list[dict]]:
    """The ``measurements`` rows, their ``provenance`` row and (levels known) the ``levels``
    sheet, built by the CLI's :func:`table_sheets` (``n4=None``: raw intensities)."""
    fat = fat or FatConfig()
    rows = []
    for k in inp.planes:
        image, g = inp.slices[k], inp.slices[k].geometry
        bias = bias_field(image, n4) if n4 is not None else None
        measured = measure_slice(image, inp.labels[k], fat, bias=bias)
        qc = inp.qc[k] if k < len(inp.qc) else None
        rows.append({
            "case": inp.case,
            "status": "segmented" if qc is not None else "read",
            "slice": k,
            "slice_position_mm": round(float(np.dot(g.origin, g.matrix[:, 2])), 3),
            **geometry_columns(g),
            "notes": "",
            "label_source": labels_source(inp),
            "level": (inp.levels[k] if k < len(inp.levels) else None) or UNKNOWN,
            **row_qc(measured.row, image, qc),
            **measured.row,
        })
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    result = CaseResult(case=inp.case, source=inp.source, status="ok", rows=rows,
                        label_status=label_status(inp), finished=stamp)
    sheets = table_sheets([result], RunConfig(out_dir=Path("."), fat=fat, n4=n4))
    for prov in sheets["provenance"]:
        prov["model"] = prov.get("model") or inp.model
    return sheets


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
