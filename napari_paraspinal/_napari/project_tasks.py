"""The work behind the Project and fine-tune widget, as plain functions (no Qt, no napari).

One import path for all of it; the code lives in modules with one job each:

- :mod:`.case_state`: which case a layer shows, and whether its edits are unsaved or safe;
- :mod:`.case_drafts`: a case's unsaved edits kept on disk as a draft, never as a version;
- :mod:`.case_layers`: a case as layer data, a layer saved as a version, what may be removed;
- :mod:`.project_text`: summary, worklist and model rows, job progress, as text;
- :mod:`.project_jobs`: open or create a project, batch segmentation and fine-tuning.

The widget only shows what these return and starts the long ones in a worker thread.
"""

from __future__ import annotations

from .case_drafts import DRAFTS_DIR, draft_path, drop_draft, has_draft, read_draft, save_drafts
from .case_layers import LayerData, blocking_edits, case_layers, save_layer, tidy
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
    pick_labels,
    unsaved,
)
from .project_jobs import BATCH_STATUSES, open_or_create, run_batch, run_finetune
from .project_text import (
    ModelItem,
    WorkRow,
    batch_summary,
    finetune_summary,
    label_names,
    model_items,
    statuses,
    summary,
    train_step,
    worklist,
)

__all__ = [
    "BATCH_STATUSES",
    "CASE_KEY",
    "DRAFTED_KEY",
    "DRAFTS_DIR",
    "DRAFT_KEY",
    "PROJECT_KEY",
    "SAVED_KEY",
    "VERSION_KEY",
    "LayerData",
    "ModelItem",
    "WorkRow",
    "batch_summary",
    "blocking_edits",
    "case_layers",
    "draft_path",
    "drafted",
    "drop_draft",
    "finetune_summary",
    "has_draft",
    "is_case_layer",
    "is_labels",
    "label_names",
    "model_items",
    "needs_saving",
    "open_or_create",
    "pick_labels",
    "read_draft",
    "run_batch",
    "run_finetune",
    "save_drafts",
    "save_layer",
    "statuses",
    "summary",
    "tidy",
    "train_step",
    "unsaved",
    "worklist",
]
