"""Labels legend: the eight labels with colour, short and long name, and editing shortcuts.

Keys 1–8 pick that label (paint mode) and 0 the eraser on paraspinal labels layers; the
keys are bound by :mod:`.viewer_hooks`, which every paraspinal widget installs, so they work
whether or not the legend is docked. The legend highlights the label the active layer
paints with (none while erasing) and follows changes made by keys, napari's own controls or
a click on a row. A checkbox switches the active layer between filled labels and contours.
"""

from __future__ import annotations

from typing import Any

from napari.layers import Labels
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QFont, QIcon, QPixmap
from qtpy.QtWidgets import QCheckBox, QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from ..core.labels import LABELS
from . import viewer_hooks
from .viewer_hooks import KEYS, bind_label_keys, select_label, selected_text

__all__ = ["KEYS", "LegendWidget", "bind_label_keys", "selected_text", "select_label"]


class LegendWidget(QWidget):
    """Label list with colour swatches; click a row or press 1–8 / 0; contour toggle."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._hooks = viewer_hooks.install(napari_viewer)
        self._followed: Labels | None = None
        self.list = QListWidget()
        for lab in LABELS:
            swatch = QPixmap(16, 16)
            swatch.fill(QColor(*lab.color))
            item = QListWidgetItem(QIcon(swatch), f"{lab.value}   {lab.short:<5} {lab.name}")
            item.setData(Qt.ItemDataRole.UserRole, lab.value)
            self.list.addItem(item)
        self.list.itemClicked.connect(
            lambda item: self.select(int(item.data(Qt.ItemDataRole.UserRole))))
        self.current = QLabel("")
        self.contour_check = QCheckBox("contours only")
        self.contour_check.toggled.connect(self._on_contour)
        hint = QLabel("Keys 1–8 pick a label, 0 the eraser, Ctrl+S saves NIfTI beside the "
                      "image, on paraspinal labels layers. The patient's left is drawn in cool "
                      "colours, the right in warm ones.")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list)
        layout.addWidget(self.current)
        layout.addWidget(self.contour_check)
        layout.addWidget(hint)

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

    def highlighted(self) -> int | None:
        """The label value shown as selected (None: none, e.g. while erasing)."""
        items = self.list.selectedItems()
        return int(items[0].data(Qt.ItemDataRole.UserRole)) if items else None

    def show_selected(self, *_: Any) -> None:
        """Highlight the active layer's label (bold, selected row); none while erasing."""
        layer = self.active_labels()
        value = None
        if layer is not None and str(getattr(layer.mode, "value", layer.mode)) != "erase":
            value = int(layer.selected_label)
        self.list.blockSignals(True)
        self.list.clearSelection()
        for row in range(self.list.count()):
            item = self.list.item(row)
            chosen = int(item.data(Qt.ItemDataRole.UserRole)) == value
            font = QFont(item.font())
            font.setBold(chosen)
            item.setFont(font)
            if chosen:
                self.list.setCurrentItem(item)
                item.setSelected(True)
        self.list.blockSignals(False)
        self.current.setText(selected_text(layer))

    def _on_active(self, *_: Any) -> None:
        layer = self.active_labels()
        self._follow(layer)
        self.contour_check.setEnabled(layer is not None)
        if layer is not None:
            self.contour_check.blockSignals(True)
            self.contour_check.setChecked(layer.contour > 0)
            self.contour_check.blockSignals(False)
        self.show_selected()

    def _follow(self, layer: Labels | None) -> None:
        """Watch the label and mode of ``layer`` instead of the previous one."""
        if self._followed is not None:
            for event in (self._followed.events.selected_label, self._followed.events.mode):
                event.disconnect(self.show_selected)
        self._followed = layer
        if layer is not None:
            layer.events.selected_label.connect(self.show_selected)
            layer.events.mode.connect(self.show_selected)

    def _on_contour(self, checked: bool) -> None:
        layer = self.active_labels()
        if layer is not None:
            layer.contour = 1 if checked else 0
