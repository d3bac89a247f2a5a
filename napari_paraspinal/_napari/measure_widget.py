"""Fat & areas widget: a live table of CSA, lean CSA and fat % while labels are edited.

Painting, filling or replacing the labels (``paint`` / ``data`` / ``set_data`` events) and
moving to another plane restart a 300 ms single-shot timer; when it fires, the shown plane
is measured on the native grid by :func:`.tasks.measure_plane` (the core's
``measure_slice``) in a worker thread. The N4 bias field of each image plane is fitted once
and reused, so repeated edits only re-run the fat split. Results of superseded runs are
dropped. The optional fat overlay shows the fat pixels inside MF/ES in one colour.

QC: the shown plane's segmentation QC (stored in the labels layer by the Segment widget or
the project) and the plausibility of the measured areas fill a ``QC`` column (``CHECK`` on
every label of a flagged plane, with the reasons naming that label) and a line above the
table with all reasons, the same flag the command line writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import FunctionWorker
from qtpy.QtCore import QTimer, Signal
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.labels import LABELS
from ..fat import METHODS
from ..measure import SliceMeasurement
from . import viewer_hooks
from .qt_common import LayerCombo, is_labels_source
from .slices import (
    ROLE_KEY,
    check_text,
    current_plane,
    fingerprint,
    layer_slice,
    native_plane,
    plane_qc,
    to_display,
)
from .tasks import label_table, measure_plane

DEBOUNCE_MS = 300
HEADERS = ("label", "CSA mm²", "lean CSA mm²", "fat %", "flag", "QC")
CHECK_STYLE = "color: #e0402a; font-weight: bold"
LABEL_EVENTS = ("paint", "data", "set_data", "labels_update", "metadata")
FAT_COLOR = {0: (0.0, 0.0, 0.0, 0.0), None: (0.0, 0.0, 0.0, 0.0), 1: (1.0, 0.9, 0.0, 1.0)}


class MeasureWidget(QWidget):
    """Choose image and labels layers and a fat method; the table follows every edit."""

    #: Emitted with the :class:`SliceMeasurement` each time the table is updated.
    measured = Signal(object)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: FunctionWorker | None = None
        self.last: SliceMeasurement | None = None
        self._last_key: tuple | None = None
        self._last_plane = 0
        self._generation = 0
        self._bias: dict[str, np.ndarray] = {}  # image-plane fingerprint -> N4 bias field
        self._watched: Labels | None = None
        self._hooks = viewer_hooks.install(napari_viewer)

        self.image_combo = LayerCombo(napari_viewer, Image, parent=self)
        self.labels_combo = LayerCombo(napari_viewer, Labels, accept=is_labels_source,
                                       parent=self)
        self.method_combo = QComboBox()
        self.method_combo.addItems(METHODS)
        self.n4_check = QCheckBox("bias-correct (N4) before separating fat")
        self.n4_check.setChecked(True)
        self.overlay_check = QCheckBox("fat overlay")
        self.table = QTableWidget(len(LABELS), len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        rows_height = self.table.verticalHeader().defaultSectionSize() * (len(LABELS) + 1)
        self.table.setMinimumHeight(rows_height + 8)  # all eight labels without scrolling
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.qc_label = QLabel("")
        self.qc_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("labels", self.labels_combo)
        form.addRow("fat method", self.method_combo)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.n4_check)
        layout.addWidget(self.overlay_check)
        layout.addWidget(self.qc_label)
        layout.addWidget(self.table)
        layout.addWidget(self.status)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.recompute)

        self.image_combo.layer_changed.connect(self.schedule)
        self.labels_combo.layer_changed.connect(self._watch)
        self.method_combo.currentIndexChanged.connect(self.schedule)
        self.n4_check.toggled.connect(self.schedule)
        self.overlay_check.toggled.connect(lambda *_: self._update_overlay())
        napari_viewer.dims.events.current_step.connect(self.schedule)
        self._watch(self.labels_combo.layer())

    def schedule(self, *_: Any) -> None:
        """Measure again in :data:`DEBOUNCE_MS` ms (restarting the wait on every call)."""
        self._timer.start()

    def recompute(self) -> FunctionWorker | None:
        """Measure the shown plane now (in a worker); None when nothing changed or is chosen."""
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None or labels is None:
            self.status.setText("choose an image layer and a labels layer")
            return None
        try:
            plane = current_plane(image, self.viewer.dims.point)
            slice_ = layer_slice(image, plane)
            lab = native_plane(labels, image, plane)
        except ValueError as err:
            self.status.setText(str(err))
            return None
        image_fp = fingerprint(slice_.data)
        method, n4 = self.method_combo.currentText(), self.n4_check.isChecked()
        qc = plane_qc(labels, plane)
        key = (id(image), id(labels), plane, image_fp, fingerprint(lab), method, n4, str(qc))
        if key == self._last_key:
            return None
        self._generation += 1
        generation = self._generation
        worker = FunctionWorker(measure_plane, slice_, lab, method, n4, self._bias.get(image_fp),
                                qc)
        note = f"plane {plane}; fat by {method} {'after N4' if n4 else 'on raw intensities'}"
        worker.returned.connect(
            lambda result: self._show(generation, key, plane, image_fp, note, result))
        worker.errored.connect(lambda err: self.status.setText(f"cannot measure: {err}"))
        self.worker = worker
        self.status.setText("measuring…")
        worker.start()
        return worker

    def _watch(self, layer: Labels | None) -> None:
        """Follow edits of ``layer`` instead of the previous labels layer."""
        if self._watched is not None:
            for name in LABEL_EVENTS:
                if hasattr(self._watched.events, name):
                    getattr(self._watched.events, name).disconnect(self.schedule)
        self._watched = layer
        if layer is not None:
            for name in LABEL_EVENTS:
                if hasattr(layer.events, name):
                    getattr(layer.events, name).connect(self.schedule)
        self.schedule()

    def _show(self, generation: int, key: tuple, plane: int, image_fp: str, note: str,
              result: tuple[SliceMeasurement, np.ndarray | None]) -> None:
        if not _alive(self.table):  # finished after the viewer closed: nothing to show
            return
        measured, bias = result
        if bias is not None:
            self._bias[image_fp] = bias
        if generation != self._generation:
            return
        self._last_key, self._last_plane, self.last = key, plane, measured
        reasons = str(measured.row.get("registration_check") or "")
        for r, (short, name, *cells) in enumerate(label_table(measured.row)):
            item = QTableWidgetItem(short)
            item.setToolTip(name)
            self.table.setItem(r, 0, item)
            for c, text in enumerate(cells, start=1):
                cell = QTableWidgetItem(text)
                if HEADERS[c] == "QC" and text != "ok":
                    cell.setToolTip(reasons)
                    cell.setForeground(QColor(224, 64, 42))
                self.table.setItem(r, c, cell)
        self.table.resizeColumnsToContents()
        flag = check_text(measured.row)
        self.qc_label.setText(f"plane {plane}: {flag}" if flag else f"plane {plane}: QC ok")
        self.qc_label.setStyleSheet(CHECK_STYLE if flag else "")
        self.status.setText(note)
        self._update_overlay()
        self.measured.emit(measured)

    def _update_overlay(self) -> None:
        """Add, update or remove the fat overlay layer of the measured labels layer."""
        labels = self.labels_combo.layer()
        image = self.image_combo.layer()
        if labels is None or image is None:
            return
        name = f"{labels.name} fat"
        layer = next((ly for ly in self.viewer.layers if isinstance(ly, Labels)
                      and ly.name == name and ly.metadata.get(ROLE_KEY) == "fat"), None)
        if not self.overlay_check.isChecked() or self.last is None:
            if layer is not None:
                self.viewer.layers.remove(layer)
            return
        if layer is None or layer.data.shape != labels.data.shape:
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_labels(
                np.zeros(labels.data.shape, np.uint8), name=name, scale=labels.scale,
                translate=labels.translate, metadata={ROLE_KEY: "fat"}, colormap=FAT_COLOR,
                opacity=0.6)
            self.viewer.layers.selection.active = active  # keep painting where the user was
        data = np.zeros(labels.data.shape, np.uint8)
        mask = to_display(image, self.last.fat_mask.astype(np.uint8))
        if data.ndim == 2:
            data[...] = mask
        else:
            data[self._last_plane] = mask
        layer.data = data


def _alive(widget: QWidget) -> bool:
    """Whether ``widget``'s Qt object still exists (a late worker result may outlive it)."""
    try:
        widget.objectName()
    except RuntimeError:  # "Internal C++ object already deleted"
        return False
    return True
