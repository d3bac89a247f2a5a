"""Segment widget: run the model on the current, chosen or every slice of an image layer.

The work is :func:`.tasks.segment_planes` in a napari generator worker; its progress events
(:class:`.tasks.SegmentStep`, a :class:`..jobs.Progress`) come back to the GUI thread, and each
finished plane is written into the ``"<image> labels"`` layer at once, so Cancel (which sets
the cancel token and stops before the next plane) keeps what was done.

Edits are never overwritten: the widget records a fingerprint of what it last wrote into the
labels layer. If the layer's data differs (a user painted, or it is a layer the widget did
not write, such as ground truth), that layer is renamed ``"<image> labels (kept HH:MM:SS)"``,
hidden and left untouched, and a new ``"<image> labels"`` layer starts from a copy of it,
so edits on planes not being segmented carry over too.

A plane the core's QC flags is never shown unmarked: its step says ``plane k: CHECK:
<reasons>``, the end-of-run line names every flagged plane, and the plane's QC columns go
into the labels layer's metadata (``QC_KEY``), from which the viewer's banner
(:mod:`.viewer_hooks`), the Fat & areas table and the export read them.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import GeneratorWorker
from napari.utils.notifications import show_warning
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
from ..segment import default_model_path, uncertainty
from . import viewer_hooks
from .job_worker import guarded
from .layers import labels_layer
from .qt_common import LayerCombo
from .slices import (
    LEVEL_KEY,
    MODEL_KEY,
    QC_KEY,
    ROLE_KEY,
    WRITTEN_KEY,
    check_text,
    current_plane,
    fingerprint,
    layer_to_slices,
    reorientation,
    to_display,
    was_edited,
)
from .tasks import SegmentStep, parse_planes, run_summary, segment_planes

LEVELS = ("auto", "L4-L5", "L5-S1")
DEVICES = ("auto", "cpu", "cuda")
CURRENT, ALL, CHOSEN = "current slice", "all slices", "chosen slices"
_CHOOSE = "choose a model folder…"


def _segment_job(*args: Any, **kwargs: Any) -> Generator[SegmentStep, None, Any]:
    """:func:`segment_planes` for the worker (:func:`.job_worker.guarded`)."""
    return (yield from guarded(segment_planes(*args, **kwargs)))


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
        self.flagged: dict[int, str] = {}  # plane -> "CHECK: <reasons>" of the last run
        self._hooks = viewer_hooks.install(napari_viewer)

        self.image_combo = LayerCombo(napari_viewer, Image, parent=self)
        self.model_combo = QComboBox()
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
        self.uncertainty_check = QCheckBox("add the uncertainty (1 - max probability) as a layer")
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
        self._image, self._done, self._failed = image, 0, False
        self.flagged = {}
        self._cancel.clear()
        # the worker class itself, not create_worker (see .job_worker)
        worker = GeneratorWorker(
            _segment_job, slices, planes, self.model_path, self.device_combo.currentText(),
            self.level_combo.currentText(), self._cancel,
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
        self.progress.setValue(step.done)
        self.status.setText(step.message)
        if step.error:
            show_warning(step.error)
        if step.segmentation is None or step.plane is None:
            return
        self._done += 1
        seg = step.segmentation
        layer = self._labels_layer(self._image)
        data = np.array(layer.data, dtype=np.uint8)
        _put(data, step.plane, to_display(self._image, seg.labels))
        levels = list(layer.metadata.get(LEVEL_KEY) or [None] * _planes(data))
        levels[step.plane] = seg.preprocessed.level
        qc = list(layer.metadata.get(QC_KEY) or [None] * _planes(data))
        qc[step.plane] = step.qc
        flag = check_text(step.qc)
        if flag:
            self.flagged[step.plane] = flag
        layer.metadata = {**layer.metadata, MODEL_KEY: step.model, LEVEL_KEY: levels,
                          QC_KEY: qc, WRITTEN_KEY: fingerprint(data)}
        layer.data = data
        if self.bias_check.isChecked() and seg.preprocessed.bias is not None:
            self._store_bias(step.plane, seg.preprocessed.bias)
        if self.uncertainty_check.isChecked():
            self._store_map(step.plane, uncertainty(seg.probabilities), "uncertainty",
                            "uncertainty", "inferno", 0.0, (0.0, 1.0))

    def _on_error(self, err: Exception) -> None:
        self._failed = True
        self.status.setText(f"failed: {err}")  # napari's worker also shows a notification

    def _on_finished(self) -> None:
        total = self.progress.maximum()
        if self._cancel.is_set():
            self.status.setText(run_summary(
                f"cancelled: {self._done} of {total} slices segmented", self.flagged))
        elif not self._failed:
            self.status.setText(run_summary(
                f"done: {self._done} of {total} slices segmented", self.flagged))
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _labels_layer(self, image: Any) -> Labels:
        """The layer to write into: the widget's own unedited layer, else a fresh one."""
        name = f"{image.name} labels"
        shape = np.shape(image.data)
        existing = next((ly for ly in self.viewer.layers
                         if isinstance(ly, Labels) and ly.name == name), None)
        if existing is not None and existing.data.shape == shape and not was_edited(
                existing.data, existing.metadata):
            return existing
        start = np.zeros(shape, np.uint8)
        if existing is not None:
            if existing.data.shape == shape:
                start = np.array(existing.data, np.uint8)
            existing.name = f"{name} (kept {time.strftime('%H:%M:%S')})"
            existing.visible = False
        data, kwargs, _ = labels_layer(reorientation(image).undo(start), _view_of(image), name)
        kwargs["metadata"][WRITTEN_KEY] = fingerprint(data)
        if existing is not None and existing.data.shape == shape:  # planes carried over
            kwargs["metadata"].update({k: existing.metadata[k]
                                       for k in (MODEL_KEY, LEVEL_KEY, QC_KEY)
                                       if k in existing.metadata})
        return self.viewer.add_labels(data, **kwargs)

    def _store_bias(self, plane: int, bias: np.ndarray) -> None:
        self._store_map(plane, bias, "N4 bias", "bias", "magma", 1.0, (0.5, 1.5))

    def _store_map(self, plane: int, values: np.ndarray, suffix: str, role: str,
                   colormap: str, fill: float, limits: tuple[float, float]) -> None:
        """Write one plane of a helper image layer ("<image> <suffix>") beside the image."""
        image = self._image
        name = f"{image.name} {suffix}"
        layer = next((ly for ly in self.viewer.layers if isinstance(ly, Image)
                      and ly.name == name and ly.metadata.get(ROLE_KEY) == role), None)
        if layer is None or layer.data.shape != np.shape(image.data):
            meta = {**image.metadata, ROLE_KEY: role}
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_image(
                np.full(np.shape(image.data), fill, np.float32), name=name, scale=image.scale,
                translate=image.translate, metadata=meta, colormap=colormap, opacity=0.5,
                contrast_limits=limits)
            self.viewer.layers.move(self.viewer.layers.index(layer),
                                    self.viewer.layers.index(image) + 1)
            self.viewer.layers.selection.active = active
        data = np.array(layer.data)
        _put(data, plane, to_display(image, values.astype(np.float32)))
        layer.data = data


def _view_of(image: Any) -> dict:
    """The part of an image layer's kwargs that :func:`labels_layer` copies."""
    return {"scale": list(image.scale), "translate": list(image.translate),
            "metadata": dict(image.metadata)}


def _planes(data: np.ndarray) -> int:
    return 1 if data.ndim == 2 else data.shape[0]


def _put(data: np.ndarray, plane: int, values: np.ndarray) -> None:
    """Write a display-oriented plane into a 2-D layer array or a stack, in place."""
    if data.ndim == 2:
        data[...] = values
    else:
        data[plane] = values
