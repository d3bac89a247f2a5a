"""Drafts: a case's unsaved edits kept on disk, never as a version (no Qt, no napari).

Switching case, opening another project, closing the viewer or deleting the layer writes the
edits of a case labels layer as a draft (:func:`save_drafts`): ``drafts/<case>.npz`` in the
project folder, native labels plus the version they were drawn on. Opening the case again
shows the draft, still unsaved; saving a version of the case removes it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import write_bytes_atomic
from ..project.store import Project
from .case_state import (
    CASE_KEY,
    DRAFTED_KEY,
    VERSION_KEY,
    is_case_layer,
    is_labels,
    needs_saving,
)
from .layers import native_labels
from .slices import fingerprint

#: The project subfolder holding drafts.
DRAFTS_DIR = "drafts"


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
