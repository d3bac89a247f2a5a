"""Project and fine-tune widget: worklist, correct and mark cases, batch-segment, fine-tune.

A thin front for :mod:`.project_tasks` and the project store: open or create a project, pick
a case from the worklist (its image and latest labels become layers that keep the native
geometry), correct the labels in napari, mark the case corrected or verified for the labels
the user vouches for, segment the new cases, fine-tune the active model with a live loss and
validation-Dice curve, and make any registered model version active again.

Vouching is per case and always deliberate: opening a case resets the label check boxes to
the labels already vouched for in that case (none for a case nobody checked), and only the
Mark buttons save a version. Edits are never lost and never saved unasked: before a case's
layers are replaced (another case, the same case again, another project) edited labels are
kept as a *draft* (:func:`.project_tasks.save_drafts`), shown again, still unsaved, when the
case is reopened; the worklist's ``draft`` column and the unsaved-edits line of the open
case say so. A batch segmentation does not start while a case it would segment has unsaved
edits. Layers whose edits could not be written, or that hold a segmentation made in the
viewer but not saved, stay in the viewer.

Batch segmentation and fine-tuning run in a :class:`FunctionWorker` on their own connection
to the project; progress comes back through a queued Qt signal, and Cancel sets an event the
work polls (between cases, between training batches). The worker is not asked to quit: a
quitting worker does not return its result, and a cancelled run's result says what was kept.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from pathlib import Path
from threading import Event
from typing import Any

from napari.qt.threading import FunctionWorker
from napari.utils.notifications import show_warning
from qtpy.QtCore import QEvent, QObject, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.labels import LABELS
from ..project.records import LabelVersion
from ..project.store import Project
from . import project_tasks as tasks
from . import viewer_hooks
from .curve_widget import CurveWidget

ALL = "all"
DEVICES = ("auto", "cpu", "cuda")
WORK_COLUMNS = ("case", "status", "level", "QC", "verified labels", "draft")
LABEL_EVENTS = ("paint", "data", "labels_update", "metadata")
UNSAVED_STYLE = "color: #e0802a; font-weight: bold"
MODEL_COLUMNS = ("active", "model", "version", "parent", "held-out Dice")


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (a queued connection)."""

    progress = Signal(object)


class ProjectWidget(QWidget):
    """Open a project, work through its cases, segment new ones, fine-tune and promote."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.project: Project | None = None
        self.case_id: str | None = None
        self.worker: FunctionWorker | None = None
        self.job = ""
        self.last_result: Any = None
        self.history: list[dict] = []
        self._cancel = Event()
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        cancel = self._cancel
        self.destroyed.connect(lambda *_: cancel.set())  # a closed viewer stops its job
        self._watched_window: weakref.ref | None = None  # weak: the window owns the viewer
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self._hooks = viewer_hooks.install(napari_viewer)
        self._followed: Any = None  # the open case's labels layer, for the unsaved indicator

        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("project folder (an empty one creates a project)")
        self.browse_button = QPushButton("Open…")
        self.summary = QLabel("no project open")
        self.summary.setWordWrap(True)

        self.filter_combo = QComboBox()
        self.filter_combo.addItems([ALL, *tasks.statuses()])
        self.table = QTableWidget(0, len(WORK_COLUMNS))
        self.table.setHorizontalHeaderLabels(WORK_COLUMNS)
        _read_only(self.table)
        self.open_button = QPushButton("Open case")
        self.add_button = QPushButton("Add images…")

        self.case_label = QLabel("no case open")
        self.case_label.setWordWrap(True)
        self.label_checks = {lab.value: QCheckBox(lab.short) for lab in LABELS}
        for check in self.label_checks.values():
            check.setToolTip("vouch for this label when marking the case")
        self.unsaved_label = QLabel("")
        self.unsaved_label.setWordWrap(True)
        self.unsaved_label.setStyleSheet(UNSAVED_STYLE)
        self.corrected_button = QPushButton("Mark corrected")
        self.verified_button = QPushButton("Mark verified")

        self.segment_button = QPushButton("Segment new cases")
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 500)
        self.epochs_spin.setValue(15)
        self.minutes_spin = QDoubleSpinBox()
        self.minutes_spin.setRange(0.0, 1440.0)
        self.minutes_spin.setDecimals(1)
        self.minutes_spin.setSpecialValueText("no limit")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.finetune_button = QPushButton("Start fine-tuning")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.curve = CurveWidget()
        self.job_status = QLabel("")
        self.job_status.setWordWrap(True)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)

        self.models_table = QTableWidget(0, len(MODEL_COLUMNS))
        self.models_table.setHorizontalHeaderLabels(MODEL_COLUMNS)
        _read_only(self.models_table)
        self.activate_button = QPushButton("Activate")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self._layout()
        self._set_enabled()
        self.browse_button.clicked.connect(lambda: self._browse())
        self.path_edit.returnPressed.connect(lambda: self.open_project(self.path_edit.text()))
        self.filter_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.table.cellDoubleClicked.connect(lambda row, _col: self._open_row(row))
        self.open_button.clicked.connect(lambda: self._open_row(self.table.currentRow()))
        self.add_button.clicked.connect(lambda: self._add_dialog())
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
            project = tasks.open_or_create(path)
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
        self.summary.setText(tasks.summary(self.project))
        status = self.filter_combo.currentText()
        rows = tasks.worklist(self.project, None if status == ALL else status)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            values = (row.case_id, row.status, row.level, row.qc, row.verified, row.draft)
            for c, value in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(value))
            if row.case_id == self.case_id:
                self.table.selectRow(r)
        models = tasks.model_items(self.project)
        self.models_table.setRowCount(len(models))
        for r, m in enumerate(models):
            values = ("●" if m.active else "", m.model_id, m.version, m.parent, m.heldout)
            for c, value in enumerate(values):
                self.models_table.setItem(r, c, QTableWidgetItem(value))
        self._show_case()
        self.show_unsaved()

    def worklist_ids(self) -> list[str]:
        """Case ids in the worklist as shown (after the status filter)."""
        return [self.table.item(r, 0).text() for r in range(self.table.rowCount())]

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

    # ----------------------------------------------------------------- cases

    def open_case(self, case_id: str) -> bool:
        """Show a case's image and latest labels (edits of the open case kept as a draft).

        The vouch check boxes are reset to the labels already vouched for in this case.
        """
        if self.project is None or not self.close_case():
            return False
        try:
            (image, kw, _), (labels, lab_kw, _) = tasks.case_layers(self.project, case_id)
            case = self.project.case(case_id)
        except (ValueError, OSError) as err:
            self.status.setText(f"cannot open case {case_id}: {err}")
            self.refresh()
            return False
        self.set_labelled(case.verified_labels)
        self.viewer.add_image(image, **kw)
        layer = self.viewer.add_labels(labels, **lab_kw)
        self.viewer.layers.selection.active = layer
        self.viewer.reset_view()
        self.case_id = case_id
        self._follow(layer)
        kept = self.status.text() if self.status.text().startswith("unsaved edits") else ""
        if lab_kw["metadata"].get(tasks.DRAFT_KEY):
            text = (f"opened {case_id} with the unsaved edits kept from last time "
                    "(a draft): mark the case to save them")
        else:
            text = f"opened {case_id}"
        self.status.setText(f"{kept}; {text}" if kept else text)
        self.refresh()
        return True

    def close_case(self) -> bool:
        """Keep edited layers of the project's cases as drafts (never as a version), then
        remove the layers whose content is safe (in the store or a draft)."""
        if self.project is None:
            return True
        self._save_drafts(list(self.viewer.layers))
        self._follow(None)
        for layer in tasks.tidy(self.project, list(self.viewer.layers)):
            self.viewer.layers.remove(layer)
        left = [ly.name for ly in self.viewer.layers if tasks.is_labels(ly)
                and tasks.is_case_layer(ly, self.project.root) and tasks.needs_saving(ly)
                and not tasks.drafted(ly)]
        if left:
            self.status.setText("unsaved edits could not be kept as a draft, left in the "
                                f"viewer: {', '.join(left)}")
        self.case_id = None
        self.show_unsaved()
        return True

    def show_unsaved(self, *_: Any) -> bool:
        """Show whether the open case's labels have unsaved edits; returns that."""
        layer = self.labels_layer()
        pending = layer is not None and tasks.needs_saving(layer)
        self.unsaved_label.setText(
            "● unsaved edits: Mark corrected or verified saves them; opening another case "
            "keeps them as a draft" if pending else "")
        return pending

    def labels_layer(self) -> Any:
        """The labels layer of the open case that marking saves (None when there is none)."""
        if self.project is None or self.case_id is None:
            return None
        return tasks.pick_labels(list(self.viewer.layers), self.project.root, self.case_id,
                                 self.viewer.layers.selection.active)

    def labelled(self) -> list[int]:
        """The label values checked as vouched for."""
        return [v for v, check in self.label_checks.items() if check.isChecked()]

    def set_labelled(self, values: Sequence[int]) -> None:
        """Check exactly these label values."""
        for v, check in self.label_checks.items():
            check.setChecked(v in values)

    def mark(self, kind: str, labelled: Sequence[int] | None = None) -> LabelVersion | None:
        """Save the open case's labels as a ``corrected`` or ``verified`` version.

        ``labelled``: the labels vouched for (None: the checked ones). The layer is turned
        back to the native grid before it is saved.
        """
        layer = self.labels_layer()
        if layer is None:
            self.status.setText("open a case first")
            return None
        marks = list(self.labelled() if labelled is None else labelled)
        if not marks:
            self.status.setText("not saved: tick the labels you vouch for first")
            return None
        try:
            version = tasks.save_layer(self.project, layer, kind, marks)
        except (ValueError, OSError) as err:
            self.status.setText(f"not saved: {err}")
            return None
        self.status.setText(f"{self.case_id}: saved v{version.version} {kind} "
                            f"({tasks.label_names(version.labelled)})")
        self.refresh()
        return version

    # ----------------------------------------------------------------- long jobs

    def segment_new(self) -> FunctionWorker | None:
        """Segment the new and failed cases in a worker (refused while one of them has
        unsaved edits: mark it first)."""
        if not self._can_start():
            return None
        blocked = tasks.blocking_edits(self.project, list(self.viewer.layers))
        if blocked:
            self.status.setText(f"unsaved edits in {', '.join(blocked)}: mark the case "
                                "corrected or verified first (segmenting would replace them)")
            return None
        relay = self._relay.progress

        def report(done: int, total: int, case: str) -> None:
            relay.emit((done, total, case))

        self.progress.setRange(0, 0)
        return self._start("segment", tasks.run_batch, self.project.root,
                           self.device_combo.currentText(), report, self._cancel)

    def start_finetune(self, **overrides: Any) -> FunctionWorker | None:
        """Fine-tune the active model on the corrected and verified cases in a worker.

        ``overrides`` are further :class:`FinetuneConfig` fields (tests, experts).
        """
        if not self._can_start():
            return None
        from ..project.finetune import FinetuneConfig

        minutes = self.minutes_spin.value()
        try:
            config = FinetuneConfig(**{
                "epochs": self.epochs_spin.value(), "max_minutes": minutes or None,
                "device": self.device_combo.currentText(), **overrides})
        except (TypeError, ValueError) as err:
            self.status.setText(f"bad settings: {err}")
            return None
        self.history = []
        self.curve.set_history([])
        self.result_label.setText("")
        self.progress.setRange(0, 0)
        stop = self._cancel.is_set
        return self._start("finetune", tasks.run_finetune, self.project.root, config,
                           self._relay.progress.emit, stop)

    def cancel(self) -> None:
        """Stop the running job at its next check (between cases or training batches)."""
        if self.worker is None:
            return
        self._cancel.set()
        self.job_status.setText("cancelling…")

    def activate(self, model_id: str) -> None:
        """Make a registered model (an earlier version too) the active one."""
        if self.project is None:
            return
        if self.worker is not None and self.job == "finetune":
            self.status.setText("wait for fine-tuning to finish before changing the model")
            return
        try:
            self.project.activate(model_id)
        except ValueError as err:
            self.status.setText(f"cannot activate: {err}")
            return
        self.status.setText(f"active model: {model_id}")
        self.refresh()

    def _can_start(self) -> bool:
        if self.project is None or self.worker is not None:
            return False
        self._cancel.clear()
        return True

    def _start(self, job: str, func: Any, *args: Any) -> FunctionWorker:
        # the worker class itself, not create_worker (see the Segment widget)
        worker = FunctionWorker(func, *args)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker, self.job, self.last_result = worker, job, None
        self.job_status.setText("starting…")
        self._set_enabled()
        worker.start()
        return worker

    def _on_progress(self, event: Any) -> None:
        if self.job == "segment":
            done, total, case = event
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(done)
            self.job_status.setText("done" if case == "done" else
                                    f"segmenting {case} ({done + 1}/{total})")
            return
        done, text = tasks.train_step(event)
        stage = event.get("stage")
        if stage in ("prepare", "replay"):
            self.progress.setRange(0, int(event["total"]))
            self.progress.setValue(done)
        elif stage == "train":
            self.history.append(event)
            self.curve.set_history(self.history)
            self.progress.setRange(0, max(1, self._epochs()))
            self.progress.setValue(min(self._epochs(), sum(
                1 for e in self.history if e.get("epoch", 0) > 0)))
        elif stage == "validate":
            self.progress.setRange(0, 0)
        self.job_status.setText(text)

    def _on_returned(self, result: Any) -> None:
        self.last_result = result
        if self.job == "segment":
            self.job_status.setText(tasks.batch_summary(result))
            if self.case_id in result.segmented:
                self._reload_open_case()
        else:
            self.job_status.setText(result.status)
            self.result_label.setText(tasks.finetune_summary(result))

    def _on_error(self, err: Exception) -> None:
        self.job_status.setText(f"failed: {err}")
        show_warning(f"{self.job} failed: {err}")

    def _on_finished(self) -> None:
        self.worker = None
        self.progress.setRange(0, 1)
        complete = self.last_result is not None and not self._cancel.is_set()
        self.progress.setValue(1 if complete else 0)
        self._set_enabled()
        self.refresh()

    def _epochs(self) -> int:
        return self.epochs_spin.value()

    # ----------------------------------------------------------------- internals

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        """Keep unsaved edits as drafts when the viewer's window closes (never blocks it)."""
        watching = self._watched_window() if self._watched_window is not None else None
        if watched is watching and event.type() == QEvent.Type.Close:
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

    def _on_layer_removed(self, event: Any) -> None:
        """A case labels layer deleted by hand with unsaved edits: keep them as a draft."""
        self._save_drafts([event.value])

    def _save_drafts(self, layers: list[Any]) -> None:
        if self.project is None:
            return
        written = tasks.save_drafts(self.project, layers)
        if written:
            try:
                self.status.setText("unsaved edits kept as drafts: " + ", ".join(written))
            except RuntimeError:  # the window is closing and the label is already gone
                pass

    def _follow(self, layer: Any) -> None:
        """Keep the unsaved-edits line in step with ``layer`` (the open case's labels)."""
        if self._followed is not None:
            for name in LABEL_EVENTS:
                if hasattr(self._followed.events, name):
                    getattr(self._followed.events, name).disconnect(self.show_unsaved)
        self._followed = layer
        if layer is not None:
            for name in LABEL_EVENTS:
                if hasattr(layer.events, name):
                    getattr(layer.events, name).connect(self.show_unsaved)

    def _reload_open_case(self) -> None:
        layer = self.labels_layer()
        if layer is not None and not tasks.unsaved(layer):
            self.open_case(self.case_id)

    def _show_case(self) -> None:
        if self.project is None or self.case_id is None:
            self.case_label.setText("no case open")
            return
        layer = self.labels_layer()
        case = self.project.case(self.case_id)
        version = (layer.metadata or {}).get(tasks.VERSION_KEY) if layer is not None else None
        shown = f"v{version}" if version else "no saved labels"
        self.case_label.setText(f"case {case.id}: {case.status}, showing {shown}; "
                                f"verified: {tasks.label_names(case.verified_labels) or '–'}")

    def _set_enabled(self) -> None:
        has, busy = self.project is not None, self.worker is not None
        for w in (self.open_button, self.add_button, self.corrected_button,
                  self.verified_button):
            w.setEnabled(has)
        for w in (self.segment_button, self.finetune_button):
            w.setEnabled(has and not busy)
        self.activate_button.setEnabled(has and not (busy and self.job == "finetune"))
        self.cancel_button.setEnabled(busy)
        self.browse_button.setEnabled(not busy)
        self.path_edit.setEnabled(not busy)

    def _layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.path_edit)
        top.addWidget(self.browse_button)

        work = QGroupBox("Worklist")
        work_layout = QVBoxLayout(work)
        filt = QFormLayout()
        filt.addRow("status", self.filter_combo)
        work_layout.addLayout(filt)
        work_layout.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.add_button)
        work_layout.addLayout(row)

        case = QGroupBox("Open case")
        case_layout = QVBoxLayout(case)
        case_layout.addWidget(self.case_label)
        case_layout.addWidget(self.unsaved_label)
        case_layout.addWidget(QLabel("labels vouched for:"))
        grid = QGridLayout()
        for k, check in enumerate(self.label_checks.values()):
            grid.addWidget(check, k // 4, k % 4)
        case_layout.addLayout(grid)
        marks = QHBoxLayout()
        marks.addWidget(self.corrected_button)
        marks.addWidget(self.verified_button)
        case_layout.addLayout(marks)

        jobs = QGroupBox("Segment and fine-tune")
        jobs_layout = QVBoxLayout(jobs)
        form = QFormLayout()
        form.addRow("epochs", self.epochs_spin)
        form.addRow("max minutes", self.minutes_spin)
        form.addRow("device", self.device_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.finetune_button)
        buttons.addWidget(self.cancel_button)
        jobs_layout.addLayout(form)
        jobs_layout.addLayout(buttons)
        jobs_layout.addWidget(self.progress)
        jobs_layout.addWidget(self.job_status)
        jobs_layout.addWidget(self.curve)
        jobs_layout.addWidget(self.result_label)

        models = QGroupBox("Models")
        models_layout = QVBoxLayout(models)
        models_layout.addWidget(self.models_table)
        models_layout.addWidget(self.activate_button)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(work)
        layout.addWidget(case)
        layout.addWidget(jobs)
        layout.addWidget(models)
        layout.addWidget(self.status)
        layout.addStretch()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder", self.path_edit.text())
        if folder:
            self.open_project(folder)

    def _add_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Images to add to the project")
        if files:
            self.add_cases(files)

    def _open_row(self, row: int) -> None:
        item = self.table.item(row, 0) if row >= 0 else None
        if item is not None:
            self.open_case(item.text())

    def _activate_selected(self) -> None:
        row = self.models_table.currentRow()
        item = self.models_table.item(row, 1) if row >= 0 else None
        if item is not None:
            self.activate(item.text())


def _read_only(table: QTableWidget) -> None:
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.setMinimumHeight(120)
    table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
