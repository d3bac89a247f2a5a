"""Export widget: one click writes the measurements of an image + labels layer to XLSX and CSV.

The button asks for a path and runs :mod:`.report` in a worker thread (N4 per plane can take
a while on a stack); :meth:`ExportWidget.export` does the same synchronously for scripts and
tests. The workbook has a ``measurements`` sheet (one row per labelled plane, numbers as
numbers, with the command line's ``status`` and QC columns: ``registration_flagged`` /
``registration_check``), a ``provenance`` sheet (software version, labels layer and model,
edited or not, bias correction and fat method as JSON, flagged slices, time) and, when levels
are known, a ``levels`` sheet, all from the command line's table builder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from napari.layers import Image, Labels
from napari.qt.threading import FunctionWorker
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..fat import METHODS, FatConfig
from ..preprocess.n4 import N4Config
from . import viewer_hooks
from .qt_common import LayerCombo, is_labels_source
from .report import ExportInput, collect, write_measurements


class ExportWidget(QWidget):
    """Choose image and labels layers and the fat method; Export… writes XLSX + CSV."""

    #: Emitted with the written paths after an export from the button.
    exported = Signal(object)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: FunctionWorker | None = None
        self._hooks = viewer_hooks.install(napari_viewer)
        self.image_combo = LayerCombo(napari_viewer, Image, parent=self)
        self.labels_combo = LayerCombo(napari_viewer, Labels, accept=is_labels_source,
                                       parent=self)
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHODS)
        self.n4_check = QCheckBox("bias-correct (N4) before separating fat")
        self.n4_check.setChecked(True)
        self.export_button = QPushButton("Export XLSX + CSV…")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("labels", self.labels_combo)
        form.addRow("fat method", self.method_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.n4_check)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        layout.addStretch()
        self.export_button.clicked.connect(lambda: self._on_click())

    def export(self, path: str | os.PathLike[str]) -> list[Path]:
        """Measure and write ``path`` (.xlsx) and the CSV beside it now; returns both paths."""
        written = write_measurements(self._collect(), path, *self._settings())
        self.status.setText(f"wrote {written[0]} and {written[1].name}")
        return written

    def start_export(self, path: str | os.PathLike[str]) -> FunctionWorker | None:
        """Like :meth:`export`, in a worker thread (what the button does)."""
        try:
            inp = self._collect()
        except ValueError as err:
            self.status.setText(str(err))
            return None
        worker = FunctionWorker(write_measurements, inp, path, *self._settings())
        worker.returned.connect(self._on_written)
        worker.errored.connect(lambda err: self.status.setText(f"export failed: {err}"))
        worker.finished.connect(lambda: self.export_button.setEnabled(True))
        self.worker = worker
        self.export_button.setEnabled(False)
        self.status.setText("measuring…")
        worker.start()
        return worker

    def _collect(self) -> ExportInput:
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None or labels is None:
            raise ValueError("choose an image layer and a labels layer")
        return collect(image, labels)

    def _settings(self) -> tuple[FatConfig, N4Config | None]:
        n4 = N4Config() if self.n4_check.isChecked() else None
        return FatConfig(method=self.method_combo.currentText()), n4

    def _on_click(self) -> None:
        image = self.image_combo.layer()
        default = f"{image.name if image is not None else 'measurements'}.xlsx"
        path, _ = QFileDialog.getSaveFileName(self, "Export measurements", default,
                                              "Excel workbook (*.xlsx)")
        if path:
            self.start_export(path)

    def _on_written(self, written: list[Path]) -> None:
        self.status.setText(f"wrote {written[0]} and {written[1].name}")
        self.exported.emit(written)

