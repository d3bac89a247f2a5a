"""A project case as napari layer data, and back: load, save as a version, tidy away.

Plain functions (no Qt, no napari); layers are duck-typed as in :mod:`.case_state`, which
says how a case's layers protect a user's edits. A case shown with the model's labels
carries the case's QC flags (``QC_KEY``), so the viewer's banner, the Fat & areas table and
the export mark a flagged case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..project.records import LabelVersion
from ..project.store import Project
from .case_drafts import drop_draft, read_draft
from .case_state import (
    CASE_KEY,
    DRAFT_KEY,
    DRAFTED_KEY,
    PROJECT_KEY,
    SAVED_KEY,
    VERSION_KEY,
    drafted,
    is_case_layer,
    is_labels,
    needs_saving,
    unsaved,
)
from .layers import image_layer, labels_layer, native_labels
from .project_jobs import BATCH_STATUSES
from .slices import LEVEL_KEY, MODEL_KEY, QC_KEY, ROLE_KEY, WRITTEN_KEY, fingerprint

LayerData = tuple[np.ndarray, dict, str]


def case_layers(project: Project, case_id: str) -> tuple[LayerData, LayerData]:
    """Image and latest labels of a case as napari layer data (empty labels when none).

    Both carry the case's native geometry and the display reorientation, plus the project
    folder and case id; the labels layer also records the version it shows and the
    fingerprint of its data as stored.
    """
    case = project.case(case_id)
    image = project.read_image(case_id)
    data, kwargs, kind = image_layer([image], name=case_id)
    kwargs["metadata"].update({PROJECT_KEY: str(project.root), CASE_KEY: case_id})
    if project.latest_version(case_id) is None:
        native, version = np.zeros(image.geometry.shape, np.uint8), None
    else:
        native, version = project.latest_labels(case_id)
    labels, lab_kwargs, lab_kind = labels_layer(native, kwargs, name=f"{case_id} labels")
    stamp = fingerprint(labels)
    lab_kwargs["metadata"].update({
        VERSION_KEY: None if version is None else version.version,
        SAVED_KEY: stamp, WRITTEN_KEY: stamp, LEVEL_KEY: [case.level]})
    draft = read_draft(project, case_id)
    if draft is not None and draft.shape == native.shape:
        labels = labels_layer(draft, kwargs, name=f"{case_id} labels")[0]
        lab_kwargs["metadata"][DRAFT_KEY] = True
    if version is not None and version.model_id:
        lab_kwargs["metadata"][MODEL_KEY] = version.model_id
    if version is not None and version.kind == "automatic" and case.qc_flags:
        lab_kwargs["metadata"][QC_KEY] = [dict(case.qc_flags)]  # the model's labels' QC
    return (data, kwargs, kind), (labels, lab_kwargs, lab_kind)


def save_layer(project: Project, layer: Any, kind: str,
               labelled: Sequence[int] | None = None) -> LabelVersion:
    """Save a case's labels layer as a new version, on the native grid; marks it saved.

    The model's QC flag leaves the layer with a person's version (they vouched for it).
    """
    meta = layer.metadata or {}
    data = np.asarray(layer.data)
    if data.ndim != 2:
        raise ValueError(f"layer {layer.name!r} is not a single slice ({data.shape})")
    native, _ = native_labels(data, meta)
    version = project.save_labels(meta[CASE_KEY], native, kind,
                                  labelled=None if labelled is None else list(labelled))
    dropped = (DRAFT_KEY, DRAFTED_KEY) + ((QC_KEY,) if kind != "automatic" else ())
    meta = {k: v for k, v in meta.items() if k not in dropped}
    layer.metadata = {**meta, SAVED_KEY: fingerprint(data), VERSION_KEY: version.version}
    drop_draft(project, meta[CASE_KEY])
    return version


def blocking_edits(project: Project, layers: Iterable[Any]) -> list[str]:
    """Cases a batch segmentation would segment that have unsaved edits in the viewer."""
    out = []
    for layer in layers:
        if is_labels(layer) and is_case_layer(layer, project.root) and needs_saving(layer):
            case_id = layer.metadata[CASE_KEY]
            if project.case(case_id).status in BATCH_STATUSES and case_id not in out:
                out.append(case_id)
    return out


def tidy(project: Project, layers: Iterable[Any]) -> list[Any]:
    """The project's case layers that may be removed from the viewer now.

    Helper layers and labels layers whose data the store (or their draft) holds may go; a
    layer with unsaved content stays, and so does the image of a case that keeps a labels layer.
    """
    mine = [ly for ly in layers if is_case_layer(ly, project.root)]
    keep_cases = set()
    removable = []
    for layer in mine:
        meta = layer.metadata or {}
        if meta.get(ROLE_KEY):
            removable.append(layer)
        elif is_labels(layer):
            if unsaved(layer) and not drafted(layer) and (
                    SAVED_KEY in meta or np.asarray(layer.data).any()):
                keep_cases.add(meta[CASE_KEY])
            else:
                removable.append(layer)
    for layer in mine:
        meta = layer.metadata or {}
        if not meta.get(ROLE_KEY) and not is_labels(layer) and meta[CASE_KEY] not in keep_cases:
            removable.append(layer)
    return removable
