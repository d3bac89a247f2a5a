"""Batch work on a project: segment its new cases, and measure every case for the spreadsheet.

Segmentation adds an *automatic* label version per case with the project's active model (the
shipped model is registered and activated first when the project has none), records the level
and the registration QC, and stores the measurements. Cases a person corrected or verified are
never segmented again: their work stays the latest version. A case the chain cannot use is
marked failed with the reason, and the batch goes on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from threading import Event

from ..core.errors import InputError
from ..fat import FatConfig
from ..measure import geometry_columns, measure_slice, method_provenance
from ..preprocess.chain import UNKNOWN
from ..preprocess.n4 import N4Config
from .store import Project

ProgressFn = Callable[[int, int, str], None]


@dataclass
class BatchResult:
    """Which cases were segmented, which failed (with the reason), which were left alone."""

    segmented: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    cancelled: bool = False


def active_model_id(project: Project) -> str:
    """The active model's id; registers and activates the shipped model if there is none."""
    active = project.active_model()
    if active is not None:
        return active.id
    from ..segment import default_model_path

    return project.register_model(default_model_path(), active=True)


def segment_project(project: Project, statuses: Sequence[str] = ("new", "failed"),
                    device: str = "auto", level: str | None = None,
                    fat: FatConfig | None = None, progress: ProgressFn | None = None,
                    cancel: Event | None = None) -> BatchResult:
    """Segment the cases in ``statuses`` with the active model; save, measure, flag.

    ``level`` None uses each case's recorded level, else detects it. ``corrected`` and
    ``verified`` cases are refused as statuses: a correction is never buried under a new
    automatic version.
    """
    protected = {"corrected", "verified"} & set(statuses)
    if protected:
        raise ValueError(f"cases that are {sorted(protected)} are never re-segmented")
    from ..segment import load_model, segment_slice

    model_id = active_model_id(project)
    model = load_model(project.model(model_id).path, device)
    cases = [c for c in project.cases() if c.status in statuses]
    result = BatchResult(skipped=[c.id for c in project.cases() if c.status not in statuses])
    for n, case in enumerate(cases):
        if cancel is not None and cancel.is_set():
            result.cancelled = True
            break
        if progress is not None:
            progress(n, len(cases), case.id)
        try:
            image = project.read_image(case.id)
            seg = segment_slice(image, model, level or case.level or "auto")
        except InputError as err:
            project.set_status(case.id, "failed", err.problem)
            result.failed[case.id] = err.problem
            continue
        reg = seg.preprocessed.registration
        version = project.save_labels(case.id, seg.labels, "automatic", model_id=model_id)
        if reg.level != UNKNOWN:
            project.set_level(case.id, reg.level)
        project.set_qc(case.id, reg.qc_columns())
        measured = measure_slice(image, seg.labels, fat, bias=seg.preprocessed.bias)
        project.save_measurements(case.id, version.id, measured.row)
        result.segmented.append(case.id)
    if progress is not None:
        progress(len(result.segmented) + len(result.failed), len(cases), "done")
    return result


def project_sheets(project: Project, fat: FatConfig | None = None,
                   n4: N4Config | None = None) -> dict[str, list[dict]]:
    """The ``measurements`` and ``provenance`` rows of every case with a label version.

    Each case is measured on its latest version (automatic, corrected or verified: the
    ``label_status`` column says which), on its native grid, fat on N4-corrected intensities.
    """
    fat = fat or FatConfig()
    n4 = n4 if n4 is not None else N4Config()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows, provenance = [], []
    for case in project.cases():
        if project.latest_version(case.id) is None:
            continue
        labels, version = project.latest_labels(case.id)
        image = project.read_image(case.id)
        measured = measure_slice(image, labels, fat, n4=n4)
        model = project.model(version.model_id) if version.model_id else None
        rows.append({"case": case.id, "label_status": version.kind,
                     "label_version": version.version, "level": case.level or "",
                     "registration_flagged": case.qc_flags.get("registration_flagged"),
                     **geometry_columns(image.geometry), **measured.row})
        provenance.append({
            "case": case.id,
            **method_provenance(n4, fat),
            "label_status": version.kind,
            "label_version": version.version,
            "labels_file": version.relpath,
            "labels_sha256": version.sha256,
            "verified_labels": ",".join(str(v) for v in case.verified_labels),
            "model": model.id if model else "",
            "model_weights_sha256": model.weights_sha256 if model else "",
            "preprocessing": json.dumps(model.card.get("preprocessing", {})) if model else "",
            "qc_flags": json.dumps(case.qc_flags),
            "labels_saved": version.created_at,
            "time": stamp,
        })
    return {"measurements": rows, "provenance": provenance}
