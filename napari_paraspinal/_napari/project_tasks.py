"""The work behind the Project and fine-tune widget, as plain functions (no Qt, no napari).

The widget only shows what these return and starts the long ones in a worker thread. Layers
are duck-typed (``.data`` / ``.metadata`` / ``.name``), as in :mod:`.slices`.

How a case's layers protect a user's edits: a case is loaded as an image layer and a labels
layer on the canonical view (:mod:`.layers`), both carrying the case id and the project folder
in their metadata. The labels layer also records the fingerprint of what is in the store
(``SAVED_KEY``) and of what was written into it (the Segment widget's ``WRITTEN_KEY``).
A labels layer whose data differs from both was edited by a person and is unsaved. A version
is only ever saved when the person marks the case (corrected or verified, vouching for the
labels ticked for *that* case): switching case, opening another project, closing the viewer
or deleting the layer writes the edits as a *draft* instead (:func:`save_drafts`):
``drafts/<case>.npz`` in the project folder, native labels plus the version they were drawn
on. Opening the case again shows the draft, still unsaved; saving a version of the case
removes it. A batch segmentation does not start while a case it would segment has unsaved
edits (:func:`blocking_edits`). A layer differing only from the store holds a machine
segmentation made in the viewer; it is never saved as a correction, and never removed
either (:func:`tidy`).

A case shown with the model's labels carries the case's QC flags (``QC_KEY``), so the
viewer's banner, the Fat & areas table and the export mark a flagged case.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.atomic import write_bytes_atomic
from ..core.labels import BY_VALUE
from ..project.batch import BatchResult, segment_project
from ..project.records import LabelVersion, ProjectError
from ..project.schema import LABEL_VALUES, STATUSES
from ..project.store import Project
from .layers import image_layer, labels_layer, native_labels
from .slices import (
    LEVEL_KEY,
    MODEL_KEY,
    QC_KEY,
    ROLE_KEY,
    WRITTEN_KEY,
    check_text,
    fingerprint,
    was_edited,
)

if TYPE_CHECKING:  # torch is imported only when fine-tuning starts
    from ..project.finetune import FinetuneConfig, FinetuneResult

#: Layer metadata: which project and case a layer shows, which label version it was
#: loaded from or last saved as, and the fingerprint of the data the store holds.
PROJECT_KEY = "paraspinal_project"
CASE_KEY = "paraspinal_case"
VERSION_KEY = "paraspinal_version"
SAVED_KEY = "paraspinal_saved"
#: Set on a labels layer whose data came from a draft, not from a saved version.
DRAFT_KEY = "paraspinal_draft"
#: Fingerprint of a labels layer's data as last written to its draft.
DRAFTED_KEY = "paraspinal_drafted"
#: The project subfolder holding drafts.
DRAFTS_DIR = "drafts"

LayerData = tuple[np.ndarray, dict, str]
#: Statuses a batch segmentation works on (corrections are never segmented again).
BATCH_STATUSES = ("new", "failed")


@dataclass(frozen=True)
class WorkRow:
    """One worklist line, as text."""

    case_id: str
    status: str
    level: str
    qc: str
    verified: str
    draft: str = ""  # "unsaved draft" when the case has edits kept as a draft


@dataclass(frozen=True)
class ModelItem:
    """One registered model, as text."""

    model_id: str
    version: str
    parent: str
    heldout: str
    active: bool


def open_or_create(path: str | os.PathLike[str]) -> Project:
    """Open the project in ``path``; create one when the folder is missing or empty.

    A folder holding other files is refused rather than turned into a project by mistake.
    """
    folder = Path(path).expanduser()
    if Project.is_project(folder):
        return Project.open(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ProjectError(folder, "not a project, and not empty: choose a project folder, "
                                   "or an empty one to create a project")
    return Project.init(folder)


def summary(project: Project) -> str:
    """Case counts per status and the active model, on one line."""
    counts = project.status_counts()
    total = sum(counts.values())
    parts = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    active = project.active_model()
    model = active.id if active is not None else "none (the shipped model is used first)"
    return f"{total} cases{': ' + parts if parts else ''} · active model: {model}"


def worklist(project: Project, status: str | None = None) -> list[WorkRow]:
    """The cases (of one status) as worklist rows, in the order they were added."""
    rows = []
    for case in project.cases(status):
        flags = case.qc_flags or {}
        qc = check_text(flags) or ("ok" if flags else "")
        if case.status == "failed" and case.message:
            qc = f"failed: {case.message}"
        verified = case.verified_labels
        rows.append(WorkRow(case.id, case.status, case.level or "", qc,
                            "all" if tuple(verified) == LABEL_VALUES else label_names(verified),
                            "unsaved draft" if has_draft(project, case.id) else ""))
    return rows


def model_items(project: Project) -> list[ModelItem]:
    """Registered models, oldest first, with their held-out Dice when fine-tuned here."""
    out = []
    for m in project.models():
        metrics = m.card.get("metrics") or {}
        before, after = metrics.get("parent_heldout_dice"), metrics.get("heldout_dice")
        heldout = f"{_dice(before)} → {_dice(after)}" if after is not None else ""
        out.append(ModelItem(m.id, str(m.card.get("version", "")), m.parent or "", heldout,
                             m.active))
    return out


def label_names(values: Iterable[int]) -> str:
    """Short names of label values, e.g. ``MF_L MF_R``."""
    return " ".join(BY_VALUE[v].short for v in values if v in BY_VALUE)


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


def is_case_layer(layer: Any, root: str | os.PathLike[str],
                  case_id: str | None = None) -> bool:
    """A layer showing a case of the project in ``root`` (of ``case_id`` when given)."""
    meta = getattr(layer, "metadata", None) or {}
    if meta.get(PROJECT_KEY) != str(Path(root).absolute()) or CASE_KEY not in meta:
        return False
    return case_id is None or meta[CASE_KEY] == case_id


def is_labels(layer: Any) -> bool:
    """A labels layer a person may have drawn in (napari's Labels; helpers left out)."""
    return type(layer).__name__ == "Labels" and not (layer.metadata or {}).get(ROLE_KEY)


def unsaved(layer: Any) -> bool:
    """The labels layer's data is not what the project store holds for it."""
    return (layer.metadata or {}).get(SAVED_KEY) != fingerprint(np.asarray(layer.data))


def needs_saving(layer: Any) -> bool:
    """Unsaved and edited by a person (not just written by a segmentation in the viewer).

    A layer the store never held counts only when it holds labels.
    """
    meta = layer.metadata or {}
    data = np.asarray(layer.data)
    if SAVED_KEY not in meta and not data.any():
        return False
    return unsaved(layer) and was_edited(data, meta)


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


def draft_path(project: Project, case_id: str) -> Path:
    """Where a case's draft lives."""
    return Path(project.root) / DRAFTS_DIR / f"{case_id}.npz"


def save_drafts(project: Project, layers: Iterable[Any]) -> list[str]:
    """Write every edited, unsaved case labels layer of the project as a draft (atomic).

    For edits nobody vouched for yet: before a case is closed, when the viewer closes or a
    layer is deleted (never a version: only marking a case vouches for labels). Returns the
    case ids written; a layer that cannot be written is skipped (and so stays unsaved).
    """
    written = []
    for layer in layers:
        if not (is_labels(layer) and is_case_layer(layer, project.root)
                and needs_saving(layer)):
            continue
        meta = layer.metadata or {}
        data = np.asarray(layer.data)
        if data.ndim != 2:
            continue
        native, _ = native_labels(data, meta)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, labels=native,
                            base_version=np.int64(meta.get(VERSION_KEY) or 0))
        try:
            write_bytes_atomic(draft_path(project, meta[CASE_KEY]), buffer.getvalue())
        except OSError:
            continue
        layer.metadata = {**meta, DRAFTED_KEY: fingerprint(data)}
        written.append(meta[CASE_KEY])
    return written


def drafted(layer: Any) -> bool:
    """The layer's data is exactly what its draft file holds (safe to remove)."""
    return (layer.metadata or {}).get(DRAFTED_KEY) == fingerprint(np.asarray(layer.data))


def has_draft(project: Project, case_id: str) -> bool:
    """The case has a draft drawn on its latest version (what :func:`read_draft` shows)."""
    path = draft_path(project, case_id)
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as saved:
            base = int(saved["base_version"])
    except (OSError, ValueError, KeyError):
        return False
    latest = project.latest_version(case_id)
    return base == (latest.version if latest else 0)


def blocking_edits(project: Project, layers: Iterable[Any]) -> list[str]:
    """Cases a batch segmentation would segment that have unsaved edits in the viewer."""
    out = []
    for layer in layers:
        if is_labels(layer) and is_case_layer(layer, project.root) and needs_saving(layer):
            case_id = layer.metadata[CASE_KEY]
            if project.case(case_id).status in BATCH_STATUSES and case_id not in out:
                out.append(case_id)
    return out


def read_draft(project: Project, case_id: str) -> np.ndarray | None:
    """A case's draft labels (native grid), when one was drawn on its latest version.

    A draft older than the latest version (the case was saved since) is ignored; an
    unreadable one too (it is the user's file, so it is left in place).
    """
    path = draft_path(project, case_id)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            labels, base = np.asarray(saved["labels"]), int(saved["base_version"])
    except (OSError, ValueError, KeyError):
        return None
    latest = project.latest_version(case_id)
    return labels if base == (latest.version if latest else 0) else None


def drop_draft(project: Project, case_id: str) -> None:
    """Remove a case's draft (after a version of the case was saved)."""
    draft_path(project, case_id).unlink(missing_ok=True)


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


def pick_labels(layers: Sequence[Any], root: str | os.PathLike[str], case_id: str,
                active: Any = None) -> Any:
    """The labels layer of a case to save: the active one when it is one, else the layer
    named ``"<case> labels"``, else the newest; None when there is none."""
    found = [ly for ly in layers if is_labels(ly) and is_case_layer(ly, root, case_id)]
    if active is not None and any(ly is active for ly in found):
        return active
    named = [ly for ly in found if ly.name == f"{case_id} labels"]
    return (named or found or [None])[-1]


def run_batch(root: str | os.PathLike[str], device: str = "auto",
              progress: Callable[[int, int, str], None] | None = None,
              cancel: Event | None = None) -> BatchResult:
    """Segment the project's new and failed cases with its active model (own connection)."""
    with Project.open(root) as project:
        return segment_project(project, BATCH_STATUSES, device=device, progress=progress,
                               cancel=cancel)


def run_finetune(root: str | os.PathLike[str], config: FinetuneConfig,
                 progress: Callable[[dict[str, Any]], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> FinetuneResult:
    """:func:`..project.finetune.finetune_project` on its own connection to the project."""
    from ..project.finetune import finetune_project

    with Project.open(root) as project:
        return finetune_project(project, config, progress=progress, should_stop=should_stop)


def batch_summary(result: BatchResult) -> str:
    """One line about a batch segmentation."""
    head = "cancelled" if result.cancelled else "done"
    text = f"{head}: {len(result.segmented)} segmented"
    if result.failed:
        text += f", {len(result.failed)} failed ({'; '.join(result.failed)})"
    return text


def finetune_summary(result: FinetuneResult) -> str:
    """One line about a fine-tuning run: decision, held-out Dice before and after."""
    if result.status == "cancelled":
        return f"cancelled: {result.reason}" if result.reason else "cancelled"
    scores = ""
    if result.active is not None and result.candidate is not None:
        scores = (f": held-out Dice {_dice(result.active.mean)} (active {result.parent}) → "
                  f"{_dice(result.candidate.mean)}")
    text = f"{result.status} {result.model_id}{scores}"
    return text if result.promoted else f"{text} — {result.reason}"


def train_step(event: dict[str, Any]) -> tuple[int, str]:
    """Progress of a fine-tuning event: (done count for the bar, status text)."""
    stage = event.get("stage")
    if stage == "prepare":
        return int(event["done"]), f"preparing case {event['done']}/{event['total']}"
    if stage == "replay":
        return int(event["done"]), f"replay slice {event['done']}/{event['total']}"
    if stage == "train":
        loss = event.get("loss")
        loss_text = "" if loss is None or not math.isfinite(loss) else f" loss {loss:.4f},"
        return int(event.get("epoch", 0)), (f"{event.get('phase', '')} epoch "
                                            f"{event.get('epoch', 0)}:{loss_text} "
                                            f"val Dice {_dice(event.get('val_dice'))}")
    if stage == "validate":
        return 0, f"validating on {event.get('cases', '?')} held-out cases"
    if stage == "done":
        return 0, f"{event.get('status', 'done')} {event.get('model', '')}".strip()
    return 0, str(stage or "")


def statuses() -> tuple[str, ...]:
    """Case statuses, in the store's order."""
    return STATUSES


def _dice(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value:.3f}" if math.isfinite(value) else "–"
