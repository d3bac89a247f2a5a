"""Labels legend: the eight labels with colour, short and long name, and editing shortcuts.

Keys 1–8 pick that label (paint mode) and 0 the eraser on the active paraspinal labels
layer. They are bound on each such layer (``layer.bind_key(..., overwrite=True)``) because a
layer's own keymap comes before napari's Labels defaults, where 1–7 switch modes (the
letters E, P, F, L and Z still do). A checkbox switches the active layer between filled
labels and contours.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.layers import Labels
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import QCheckBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from ..core.labels import BACKGROUND, LABELS
from .qt_common import is_paraspinal

KEYS = tuple(str(v) for v in range(len(LABELS) + 1))  # "0" (eraser) to "8"


def select_label(layer: Labels, value: int) -> None:
    """Paint ``value`` on ``layer`` next, or erase for 0 (background)."""
    if value == BACKGROUND:
        layer.mode = "erase"
    else:
        layer.selected_label = value
        layer.mode = "paint"


def bind_label_keys(layer: Labels) -> None:
    """Bind keys 0–8 on ``layer`` to :func:`select_label`, replacing napari's mode keys."""
    for key in KEYS:
        layer.bind_key(key, _selector(int(key)), overwrite=True)


def _selector(value: int) -> Callable[[Labels], None]:
    def select(layer: Labels) -> None:
        select_label(layer, value)

    select.__doc__ = f"Select label {value}" if value else "Eraser"
    return select


class LegendWidget(QWidget):
    """Label list with colour swatches; click a row or press 1–8 / 0; contour toggle."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.list = QListWidget()
        for lab in LABELS:
            swatch = QPixmap(16, 16)
            swatch.fill(QColor(*lab.color))
            item = QListWidgetItem(QIcon(swatch), f"{lab.value}   {lab.short:<5} {lab.name}")
            item.setData(Qt.ItemDataRole.UserRole, lab.value)
            self.list.addItem(item)
        self.list.itemClicked.connect(
            lambda item: self.select(int(item.data(Qt.ItemDataRole.UserRole))))
        self.contour_check = QCheckBox("contours only")
        self.contour_check.toggled.connect(self._on_contour)
        hint = QLabel("Keys 1–8 pick a label, 0 the eraser, on paraspinal labels layers.")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.contour_check)
        layout.addWidget(hint)

        for layer in napari_viewer.layers:
            self._bind(layer)
        napari_viewer.layers.events.inserted.connect(lambda event: self._bind(event.value))
        napari_viewer.layers.selection.events.active.connect(self._on_active)
        self._on_active()

    def active_labels(self) -> Labels | None:
        """The active layer when it is a labels layer."""
        layer = self.viewer.layers.selection.active
        return layer if isinstance(layer, Labels) else None

    def select(self, value: int) -> None:
        """Pick ``value`` (0: eraser) on the active labels layer."""
        layer = self.active_labels()
        if layer is not None:
            select_label(layer, value)

    def _bind(self, layer: Any) -> None:
        if isinstance(layer, Labels) and is_paraspinal(layer):
            bind_label_keys(layer)

    def _on_active(self, *_: Any) -> None:
        layer = self.active_labels()
        self.contour_check.setEnabled(layer is not None)
        if layer is not None:
            self.contour_check.blockSignals(True)
            self.contour_check.setChecked(layer.contour > 0)
            self.contour_check.blockSignals(False)

    def _on_contour(self, checked: bool) -> None:
        layer = self.active_labels()
        if layer is not None:
            layer.contour = 1 if checked else 0
