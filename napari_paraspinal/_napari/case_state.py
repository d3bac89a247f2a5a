"""Which project case a layer shows, and whether its edits are safe (no Qt, no napari).

Layers are duck-typed (``.data`` / ``.metadata`` / ``.name``), as in :mod:`.slices`.

How a case's layers protect a user's edits: a case is loaded as an image layer and a labels
layer on the canonical view (:mod:`.layers`), both carrying the case id and the project folder
in their metadata. The labels layer also records the fingerprint of what is in the store
(``SAVED_KEY``) and of what was written into it (the Segment widget's ``WRITTEN_KEY``).
A labels layer whose data differs from both was edited by a person and is unsaved. A version
is only ever saved when the person marks the case (corrected or verified, vouching for the
labels ticked for *that* case): switching case, opening another project, closing the viewer
or deleting the layer writes the edits as a *draft* instead (:mod:`.case_drafts`). A layer
differing only from the store holds a machine segmentation made in the viewer; it is never
saved as a correction, and never removed either (:func:`.case_layers.tidy`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .slices import ROLE_KEY, fingerprint, was_edited

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


def drafted(layer: Any) -> bool:
    """The layer's data is exactly what its draft file holds (safe to remove)."""
    return (layer.metadata or {}).get(DRAFTED_KEY) == fingerprint(np.asarray(layer.data))


def pick_labels(layers: Sequence[Any], root: str | os.PathLike[str], case_id: str,
                active: Any = None) -> Any:
    """The labels layer of a case to save: the active one when it is one, else the layer
    named ``"<case> labels"``, else the newest; None when there is none."""
    found = [ly for ly in layers if is_labels(ly) and is_case_layer(ly, root, case_id)]
    if active is not None and any(ly is active for ly in found):
        return active
    named = [ly for ly in found if ly.name == f"{case_id} labels"]
    return (named or found or [None])[-1]
