"""The Project widget's controls: what they are, how they are laid out, when they are enabled.

A mixin of :class:`.project_widget.ProjectWidget` (it reads the widget's ``project``,
``worker`` and ``job``); the widget wires the controls to its actions.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
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
    QVBoxLayout,
)

from ..core.labels import LABELS
from .curve_widget import CurveWidget
from .project_text import statuses

ALL = "all"
DEVICES = ("auto", "cpu", "cuda")
WORK_COLUMNS = ("case", "status", "level", "QC", "verified labels", "draft", "uncertainty",
                "edited")
UNSAVED_STYLE = "color: #e0802a; font-weight: bold"
MODEL_COLUMNS = ("active", "model", "version", "parent", "held-out Dice")


class ProjectControls:
    """Builds, lays out and enables the Project widget's controls."""

    def _make_controls(self) -> None:
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("project folder (an empty one creates a project)")
        self.browse_button = QPushButton("Open…")
        self.summary = QLabel("no project open")
        self.summary.setWordWrap(True)

        self.filter_combo = QComboBox()
        self.filter_combo.addItems([ALL, *statuses()])
        self.id_filter = QLineEdit()
        self.id_filter.setPlaceholderText("case id contains…")
        self.id_filter.setClearButtonEnabled(True)
        self.table = QTableWidget(0, len(WORK_COLUMNS))
        self.table.setHorizontalHeaderLabels(WORK_COLUMNS)
        _read_only(self.table)
        # sortable by a header click; until one, the order the cases were added
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self.open_button = QPushButton("Open case")
        self.previous_button = QPushButton("◀ Previous")
        self.previous_button.setToolTip("open the case above in the worklist (PageUp)")
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip("open the case below in the worklist, or the most "
                                    "uncertain one still to do (PageDown)")
        self.uncertain_check = QCheckBox("Next: most uncertain")
        self.uncertain_check.setToolTip("Next opens the most uncertain case not yet corrected "
                                        "or verified, instead of the row below")
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
        self.corrected_button.setToolTip("save the labels as corrected (Ctrl+Shift+Return)")
        self.verified_button = QPushButton("Mark verified")
        self.verified_button.setToolTip("save the labels as verified: accept (Ctrl+Return)")

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

    def _set_enabled(self) -> None:
        has, busy = self.project is not None, self.worker is not None
        for w in (self.open_button, self.add_button, self.corrected_button,
                  self.verified_button, self.previous_button, self.next_button):
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
        filt.addRow("case", self.id_filter)
        work_layout.addLayout(filt)
        work_layout.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.open_button)
        row.addWidget(self.add_button)
        work_layout.addLayout(row)
        step = QHBoxLayout()
        step.addWidget(self.previous_button)
        step.addWidget(self.next_button)
        work_layout.addLayout(step)
        work_layout.addWidget(self.uncertain_check)  # own row: the dock stays narrow

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
        running = QHBoxLayout()  # Cancel beside the progress it stops: the dock stays narrow
        running.addWidget(self.progress, 1)
        running.addWidget(self.cancel_button)
        jobs_layout.addLayout(form)
        jobs_layout.addLayout(buttons)
        jobs_layout.addLayout(running)
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


def _read_only(table: QTableWidget) -> None:
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.setMinimumHeight(120)
    table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
