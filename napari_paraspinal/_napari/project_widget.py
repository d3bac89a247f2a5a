"""Project and fine-tune widget: worklist, correct and mark cases, batch-segment, fine-tune.

A thin front for :mod:`.project_tasks` and the project store: open or create a project, pick
a case from the worklist (its image and latest labels become layers that keep the native
geometry), correct the labels in napari, mark the case corrected or verified for the labels
the user vouches for, segment the new cases, fine-tune the active model with a live loss and
validation-Dice curve, and make any registered model version active again. The worklist
shows each case's uncertainty and who last edited it, sorts by a header click, filters by
status and case id, and is walked from the keyboard (:data:`.project_widget_cases.KEYS`).

Vouching is per case and always deliberate: opening a case resets the label check boxes to
the labels already vouched for in that case (none for a case nobody checked), and only the
Mark buttons save a version. Edits are never lost and never saved unasked: before a case's
layers are replaced (another case, the same case again, another project) edited labels are
kept as a *draft* (:func:`.case_drafts.save_drafts`), shown again, still unsaved, when the
case is reopened; the worklist's ``draft`` column and the unsaved-edits line of the open
case say so. A batch segmentation does not start while a case it would segment has unsaved
edits. Layers whose edits could not be written, or that hold a segmentation made in the
viewer but not saved, stay in the viewer.

The widget is put together from mixins, one job each: its controls
(:mod:`.project_widget_layout`), the case review (:mod:`.project_widget_cases`) and the long
jobs and models (:mod:`.project_widget_jobs`, which says how the worker threads run); this
module holds the widget's state, the wiring, the project and the window it watches.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from napari.qt.threading import GeneratorWorker
from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QFileDialog, QTableWidgetItem, QWidget

from ..jobs import Cancel, Progress
from ..project.store import Project
from . import viewer_hooks
from .project_jobs import open_or_create
from .project_text import model_items, worklist
from .project_text import summary as project_summary
from .project_widget_cases import AUTOSAVE_MS, CaseActions
from .project_widget_jobs import JobActions, ProgressRelay
from .project_widget_layout import ALL, ProjectControls


class ProjectWidget(CaseActions, JobActions, ProjectControls, QWidget):
    """Open a project, work through its cases, segment new ones, fine-tune and promote."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.project: Project | None = None
        self.case_id: str | None = None
        self.worker: GeneratorWorker | None = None
        self.job = ""
        self.last_result: Any = None
        self.history: list[Progress] = []  # the fine-tuning's epochs
        self._cancel = Cancel()
        self._relay = ProgressRelay(self)
        self._relay.progress.connect(self._on_progress)
        cancel = self._cancel
        self.destroyed.connect(lambda *_: cancel.set())  # a closed viewer stops its job
        self._watched_window: weakref.ref | None = None  # weak: the window owns the viewer
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._hooks = viewer_hooks.install(napari_viewer)
        self._followed: Any = None  # the open case's labels layer, for the unsaved indicator
        self._opened: tuple[str, float] | None = None  # open case, time.monotonic() it opened
        self._shown_row = 0  # the open case's row in the worklist when last listed
        self.autosave = QTimer(self)  # edits kept as a draft soon after the last stroke
        self.autosave.setSingleShot(True)
        self.autosave.setInterval(AUTOSAVE_MS)
        self.autosave.timeout.connect(lambda: self.autosave_draft())

        self._make_controls()
        self._layout()
        self._make_shortcuts()
        self._set_enabled()
        self.browse_button.clicked.connect(lambda: self._browse())
        self.path_edit.returnPressed.connect(lambda: self.open_project(self.path_edit.text()))
        self.filter_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.id_filter.textChanged.connect(lambda _: self.refresh())
        self.table.cellDoubleClicked.connect(lambda row, _col: self._open_row(row))
        self.open_button.clicked.connect(lambda: self._open_row(self.table.currentRow()))
        self.add_button.clicked.connect(lambda: self._add_dialog())
        self.next_button.clicked.connect(lambda: self.open_next())
        self.previous_button.clicked.connect(lambda: self.open_previous())
        self.corrected_button.clicked.connect(lambda: self.mark("corrected"))
        self.verified_button.clicked.connect(lambda: self.mark("verified"))
        self.segment_button.clicked.connect(lambda: self.segment_new())
        self.finetune_button.clicked.connect(lambda: self.start_finetune())
        self.cancel_button.clicked.connect(lambda: self.cancel())
        self.activate_button.clicked.connect(lambda: self._activate_selected())

    # ----------------------------------------------------------------- project

    def open_project(self, path: str | Path) -> Project | None:
        """Open (or create, in an empty or new folder) the project in ``path``."""
        if self.worker is not None:
            self.status.setText("wait for the running job to finish or cancel it first")
            return None
        if self.project is not None and not self.close_case():
            return None
        try:
            project = open_or_create(path)
        except (ValueError, OSError) as err:
            self.status.setText(f"cannot open the project: {err}")
            return None
        if self.project is not None:
            self.project.close()
        self.project = project
        self.path_edit.setText(str(project.root))
        self.status.setText(f"project {project.root}")
        self.viewer.title = f"napari-paraspinal — {Path(project.root).name}"
        self._watch_window()
        self.refresh()
        return project

    def refresh(self) -> None:
        """Reread the summary, the worklist and the models from the store."""
        self._set_enabled()
        if self.project is None:
            return
        self.summary.setText(project_summary(self.project))
        status = self.filter_combo.currentText()
        rows = worklist(self.project, None if status == ALL else status, self.id_filter.text())
        self.table.setSortingEnabled(False)  # rows stay put while they are filled
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            values = (row.case_id, row.status, row.level, row.qc, row.verified, row.draft,
                      row.uncertainty, row.edited)
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                if c == 0:
                    item.setData(Qt.ItemDataRole.UserRole, row.case_id)
                self.table.setItem(r, c, item)
        self.table.setSortingEnabled(True)  # sorted again by the header's column, if any
        ids = self.worklist_ids()
        if self.case_id in ids:
            self._shown_row = ids.index(self.case_id)
            self.table.selectRow(self._shown_row)
        models = model_items(self.project)
        self.models_table.setRowCount(len(models))
        for r, m in enumerate(models):
            values = ("●" if m.active else "", m.model_id, m.version, m.parent, m.heldout)
            for c, value in enumerate(values):
                self.models_table.setItem(r, c, QTableWidgetItem(value))
        self._show_case()
        self.show_unsaved()

    def worklist_ids(self) -> list[str]:
        """Case ids in the worklist as shown (filtered and sorted), top to bottom."""
        return [self.table.item(r, 0).data(Qt.ItemDataRole.UserRole)
                for r in range(self.table.rowCount())]

    def add_cases(self, paths: Sequence[str | Path]) -> None:
        """Add image files or DICOM folders to the project (each slice read and checked)."""
        if self.project is None:
            return
        result = self.project.add(list(paths))
        text = f"added {len(result.added)} cases"
        if result.existing:
            text += f", {len(result.existing)} already there"
        if result.failed:
            text += f"; could not add: {'; '.join(str(e) for e in result.failed)}"
        self.status.setText(text)
        self.refresh()

    # ----------------------------------------------------------------- window

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Keep unsaved edits as drafts when the viewer's window closes (never blocks it)."""
        watching = self._watched_window() if self._watched_window is not None else None
        if watched is watching and event.type() == QEvent.Type.Close:
            self._record_time_open()
            self._save_drafts(list(self.viewer.layers))
        return False

    def _watch_window(self) -> None:
        """Watch the top-level window this dock widget lives in (once it is docked)."""
        window = self.window()
        watching = self._watched_window() if self._watched_window is not None else None
        if window is not self and window is not watching:
            if watching is not None:
                watching.removeEventFilter(self)
            window.installEventFilter(self)
            self._watched_window = weakref.ref(window)

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._watch_window()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder", self.path_edit.text())
        if folder:
            self.open_project(folder)

    def _add_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Images to add to the project")
        if files:
            self.add_cases(files)
