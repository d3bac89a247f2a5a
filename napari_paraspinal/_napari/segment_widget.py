"""Segment widget: run the model on the current, chosen or every slice of an image layer.

The work is :func:`.tasks.segment_planes`, in a child process (:mod:`.segment_proc`) relayed
by a napari generator worker; its progress events
(:class:`.tasks.SegmentStep`, a :class:`..jobs.Progress`, carrying each finished plane in
display orientation, made in the worker) come back to the GUI thread. Each finished plane
is written in place into the ``"<image> labels"`` layer by a :class:`.segment_results.
ResultWriter`, and the layers, progress bar and status are refreshed at most every
:data:`SHOW_MS` ms, so Cancel (which sets the cancel token and stops before the next
planes) keeps what was done and the GUI stays responsive.

Edits are never overwritten: an edited ``"<image> labels"`` layer is kept (renamed, hidden)
when a run starts, and a plane painted during the run keeps its pixels, its result going to
a separate layer; painting during a run changes no layer's name or visibility, nor the
active layer, brush or mode (:mod:`.segment_results`).

A plane the core's QC flags is never shown unmarked: its step says ``plane k: CHECK:
<reasons>``, the end-of-run line names every flagged plane, and the plane's QC columns go
into the labels layer's metadata (``QC_KEY``), from which the viewer's banner
(:mod:`.viewer_hooks`), the Fat & areas table and the export read them.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

from napari.layers import Image
from napari.qt.threading import GeneratorWorker
from napari.utils.notifications import show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..jobs import Cancel
from ..segment import default_model_path
from . import viewer_hooks
from .job_worker import guarded
from .qt_common import LayerCombo
from .segment_proc import segment_steps
from .segment_results import ResultWriter
from .slices import check_text, current_plane, layer_to_slices, reorientation
from .tasks import SegmentStep, parse_planes, run_summary

LEVELS = ("auto", "L4-L5", "L5-S1")
DEVICES = ("auto", "cpu", "cuda")
CURRENT, ALL, CHOSEN = "current slice", "all slices", "chosen slices"
_CHOOSE = "choose a model folder…"
#: At most one refresh of the layers, bar and status per this many ms while a run goes on.
SHOW_MS = 100


def _segment_job(*args: Any, **kwargs: Any) -> Generator[SegmentStep, None, Any]:
    """:func:`.segment_proc.segment_steps` (a child process) for the worker
    (:func:`.job_worker.guarded`)."""
    return (yield from guarded(segment_steps(*args, **kwargs)))


class SegmentWidget(QWidget):
    """Choose image, model, level, device and slices; Run, watch progress, Cancel."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker: GeneratorWorker | None = None
        self.model_path: Path | None = None
        self._cancel = Cancel()
        self._image: Any = None
        self._done = 0
        self._failed = False
        self.writer: ResultWriter | None = None  # where the last run's results went
        self._last_step: SegmentStep | None = None
        self._show_timer = QTimer(self)
        self._show_timer.setSingleShot(True)
        self._show_timer.setInterval(SHOW_MS)
        self._show_timer.timeout.connect(self._show)
        self.flagged: dict[int, str] = {}  # plane -> "CHECK: <reasons>" of the last run
        self._hooks = viewer_hooks.install(napari_viewer)

        self.image_combo = LayerCombo(napari_viewer, Image, parent=self)
        self.model_combo = QComboBox()
        # sized by a short minimum, not its longest entry: the docks stay narrow beside the
        # worklist and the canvas keeps its room (the full name is in the list and tooltip)
        self.model_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(14)
        self.model_combo.addItem(f"shipped: {default_model_path().name}", None)
        self.model_combo.addItem(_CHOOSE, _CHOOSE)
        self.model_combo.activated.connect(self._on_model_chosen)
        self.level_combo = QComboBox()
        self.level_combo.addItems(LEVELS)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.planes_combo = QComboBox()
        self.planes_combo.addItems([CURRENT, ALL, CHOSEN])
        self.planes_edit = QLineEdit()
        self.planes_edit.setPlaceholderText("chosen slices, e.g. 3, 5-7")
        self.planes_edit.setEnabled(False)
        self.planes_combo.currentTextChanged.connect(
            lambda text: self.planes_edit.setEnabled(text == CHOSEN))
        self.bias_check = QCheckBox("add the N4 bias field as a layer")
        self.uncertainty_check = QCheckBox("add the uncertainty as a layer")
        self.uncertainty_check.setToolTip("uncertainty = 1 − the highest class probability, "
                                          "per pixel")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", self.model_combo)
        form.addRow("level", self.level_combo)
        form.addRow("device", self.device_combo)
        form.addRow("slices", self.planes_combo)
        form.addRow("", self.planes_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.bias_check)
        layout.addWidget(self.uncertainty_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch()

        self.run_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(lambda: self.cancel())

    def set_model_path(self, path: str | Path | None) -> None:
        """Use the bundle in ``path`` (None: the shipped model)."""
        if path is None:
            self.model_combo.setCurrentIndex(0)
            self.model_path = None
            return
        path = Path(path)
        self.model_combo.insertItem(self.model_combo.count() - 1, f"folder: {path.name}",
                                    str(path))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 2)
        self.model_path = path

    def start(self) -> GeneratorWorker | None:
        """Start segmenting the chosen image; returns the worker (None when nothing to do)."""
        if self.worker is not None:
            return self.worker
        image = self.image_combo.layer()
        if image is None:
            self.status.setText("open an image with the napari-paraspinal reader first")
            return None
        slices = layer_to_slices(image)
        if self.planes_combo.currentText() == ALL:
            planes = list(range(len(slices)))
        elif self.planes_combo.currentText() == CHOSEN:
            try:
                planes = parse_planes(self.planes_edit.text(), len(slices))
            except ValueError as err:
                self.status.setText(str(err))
                return None
        else:
            planes = [current_plane(image, self.viewer.dims.point)]
        self._image, self._done, self._failed, self._last_step = image, 0, False, None
        self.flagged = {}
        self._cancel.clear()
        maps = tuple(key for key, box in (("bias", self.bias_check),
                                          ("uncertainty", self.uncertainty_check))
                     if box.isChecked())
        self.writer = ResultWriter(self.viewer, image, maps)
        # the worker class itself, not create_worker (see .job_worker)
        worker = GeneratorWorker(
            _segment_job, slices, planes, self.model_path, self.device_combo.currentText(),
            self.level_combo.currentText(), self._cancel, reorientation(image).apply, maps,
        )
        worker.yielded.connect(self._on_step)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.progress.setRange(0, len(planes))
        self.progress.setValue(0)
        self.status.setText("loading the model…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop before the next slice; planes already done stay in the labels layer."""
        if self.worker is None:
            return
        self._cancel.set()
        self.worker.quit()
        self.status.setText("cancelling after the current slice…")

    def _on_model_chosen(self, index: int) -> None:
        if self.model_combo.itemData(index) != _CHOOSE:
            data = self.model_combo.itemData(index)
            self.model_path = Path(data) if data else None
            return
        folder = QFileDialog.getExistingDirectory(self, "Model bundle folder")
        if folder:
            self.set_model_path(folder)
        else:
            self.model_combo.setCurrentIndex(0)
            self.model_path = None

    def _on_step(self, step: SegmentStep) -> None:
        """Write a finished plane in place; the display catches up at :meth:`_show`."""
        self._last_step = step
        if step.error:
            show_warning(step.error)
        if step.display is not None and step.plane is not None and self.writer:
            self._done += 1
            flag = check_text(step.qc)
            if flag:
                self.flagged[step.plane] = flag
            self.writer.add(step)
        if not self._show_timer.isActive():
            self._show_timer.start()

    def _show(self) -> None:
        """Refresh the written layers, the bar and the status (once per :data:`SHOW_MS`)."""
        self._show_timer.stop()
        if self.writer is not None:
            self.writer.show()
        step = self._last_step
        if step is not None:
            self.progress.setValue(step.done)
            self.status.setText(step.message)

    def _on_error(self, err: Exception) -> None:
        self._show()
        self._failed, self._last_step = True, None
        self.status.setText(f"failed: {err}")  # napari's worker also shows a notification

    def _on_finished(self) -> None:
        self._show()
        if self.writer is not None:
            self.writer.finish()
        total = self.progress.maximum()
        head = ("cancelled" if self._cancel.is_set() else "done") + (
            f": {self._done} of {total} slices segmented")
        diverted = self.writer.diverted if self.writer is not None else []
        if diverted and self.writer.side is not None:
            head += (f"; slices {', '.join(map(str, diverted))} were edited during the run: "
                     f"their results are in {self.writer.side.name!r}")
        if self._cancel.is_set() or not self._failed:
            self.status.setText(run_summary(head, self.flagged))
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
