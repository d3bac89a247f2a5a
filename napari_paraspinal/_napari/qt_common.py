"""Small Qt pieces shared by the widgets: a layer picker (magicgui) that follows the viewer's
layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QWidget

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


class LayerCombo(QWidget):
    """Pick one layer of a type: a magicgui ``ComboBox`` whose choices are the viewer's
    matching layers, following inserts, removals and renames.

    A newly inserted matching layer becomes the current choice (it is what the user just
    opened or made); otherwise the current layer stays chosen while it exists.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer: Any, kind: type, accept: Callable[[Any], bool] = is_paraspinal,
                 parent: QWidget | None = None) -> None:
        from magicgui.widgets import ComboBox

        super().__init__(parent)
        self._viewer = viewer
        self._kind = kind
        self._accept = accept
        self._current: Any = None
        self.combo = ComboBox(choices=self._choices, nullable=True)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo.native)
        self.combo.changed.connect(self._on_value)
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

    def layers(self) -> list[Any]:
        """The layers offered, in the viewer's order."""
        return [ly for ly in self._viewer.layers if self._matches(ly)]

    def count(self) -> int:
        """How many layers are offered."""
        return len(self.layers())

    def itemText(self, index: int) -> str:  # noqa: N802 (QComboBox's name)
        """The name of the ``index``-th layer offered."""
        return self.layers()[index].name

    def refresh(self, *_: Any) -> None:
        """Rebuild the choices from the viewer's layers, keeping the chosen layer."""
        before = self.combo.value  # what was shown (``_current`` may already be the new one)
        layers = self.layers()
        if not any(ly is self._current for ly in layers):
            self._current = layers[-1] if layers else None
        with self.combo.changed.blocked():
            self.combo.reset_choices()
            self.combo.value = self._current
        if before is not self._current:
            self.layer_changed.emit(self._current)

    def _choices(self, _widget: Any) -> list[tuple[str, Any]]:
        return [(ly.name, ly) for ly in self.layers()]

    def _matches(self, layer: Any) -> bool:
        return isinstance(layer, self._kind) and self._accept(layer)

    def _on_value(self, value: Any) -> None:
        self._current = value
        self.layer_changed.emit(self._current)

    def _on_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)
        if self._matches(event.value):
            self._current = event.value
        self.refresh()

    def _on_removed(self, event: Any) -> None:
        event.value.events.name.disconnect(self.refresh)
        self.refresh()
