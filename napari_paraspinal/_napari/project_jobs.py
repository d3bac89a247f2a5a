"""Open or create a project, and the long jobs the Project widget runs in a worker thread.

Plain functions (no Qt, no napari) of the one job protocol (:mod:`..jobs`: ``progress`` gets
:class:`..jobs.Progress` events, ``cancel`` is the token), so the widget runs them through
:func:`..jobs.iterate`. Each job opens its own connection to the project, so the worker thread
never shares the widget's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..jobs import Cancel, ProgressFn
from ..project.batch import BatchResult, segment_project
from ..project.records import ProjectError
from ..project.store import Project

if TYPE_CHECKING:  # torch is imported only when fine-tuning starts
    from ..project.finetune import FinetuneConfig, FinetuneResult

#: Statuses a batch segmentation works on (corrections are never segmented again).
BATCH_STATUSES = ("new", "failed")


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


def run_batch(root: str | os.PathLike[str], device: str = "auto",
              progress: ProgressFn | None = None,
              cancel: Cancel | None = None) -> BatchResult:
    """Segment the project's new and failed cases with its active model (own connection)."""
    with Project.open(root) as project:
        return segment_project(project, BATCH_STATUSES, device=device, progress=progress,
                               cancel=cancel)


def run_finetune(root: str | os.PathLike[str], config: FinetuneConfig,
                 progress: ProgressFn | None = None,
                 cancel: Cancel | None = None) -> FinetuneResult:
    """:func:`..project.finetune.finetune_project` on its own connection to the project."""
    from ..project.finetune import finetune_project

    with Project.open(root) as project:
        return finetune_project(project, config, progress=progress, cancel=cancel)
