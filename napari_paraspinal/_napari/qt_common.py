"""Small Qt pieces shared by the widgets: a layer picker that follows the viewer's layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QWidget

from .slices import ROLE_KEY, has_geometry


def is_paraspinal(layer: Any) -> bool:
    """A layer on a paraspinal image grid that is not a helper layer (bias field, fat mask)."""
    return has_geometry(layer) and not is_helper(layer)


def is_helper(layer: Any) -> bool:
    """A layer made by a widget to show something (bias field, fat mask), not to measure."""
    return bool((layer.metadata or {}).get(ROLE_KEY))


def is_labels_source(layer: Any) -> bool:
    """Any labels layer a user may measure: ours, or one drawn from scratch in napari."""
    return not is_helper(layer)


class LayerCombo(QComboBox):
    """Pick one layer of a type; follows inserts, removals and renames.

    A newly inserted matching layer becomes the current choice (it is what the user just
    opened or made); otherwise the current layer stays chosen while it exists.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer: Any, kind: type, accept: Callable[[Any], bool] = is_paraspinal,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._kind = kind
        self._accept = accept
        self._current: Any = None
        self.currentIndexChanged.connect(self._on_index)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def layer(self) -> Any:
        """The chosen layer, or None."""
        return self._current

    def set_layer(self, layer: Any) -> None:
        """Choose ``layer`` (it must be in the list)."""
        self._current = layer
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Rebuild the list from the viewer's layers, keeping the chosen layer."""
        before = self.itemData(self.currentIndex()) if self.count() else None
        layers = [ly for ly in self._viewer.layers if self._matches(ly)]
        if not any(ly is self._current for ly in layers):
            self._current = layers[-1] if layers else None
        self.blockSignals(True)
        self.clear()
        for ly in layers:
            self.addItem(ly.name, ly)
        if self._current is not None:
            self.setCurrentIndex(next(n for n, ly in enumerate(layers) if ly is self._current))
        self.blockSignals(False)
        if before is not self._current:
            self.layer_changed.emit(self._current)

    def _matches(self, layer: Any) -> bool:
        return isinstance(layer, self._kind) and self._accept(layer)

    def _on_index(self, index: int) -> None:
        self._current = self.itemData(index) if index >= 0 else None
        self.layer_changed.emit(self._current)

    def _on_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)
        if self._matches(event.value):
            self._current = event.value
        self.refresh()

    def _on_removed(self, event: Any) -> None:
        event.value.events.name.disconnect(self.refresh)
        self.refresh()
