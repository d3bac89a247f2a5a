"""What every paraspinal widget installs on its viewer: the label keys and the QC banner.

- Keys 1–8 pick that label (paint mode) and 0 the eraser on every paraspinal labels layer
  (one on an image grid of this plugin, not a helper layer), whichever widget is docked.
  They are bound on the layer itself (``layer.bind_key(..., overwrite=True)``) as it is
  inserted: a layer's own keymap comes before napari's Labels defaults, where the digits
  switch modes (3 would leave painting for another tool). The letters E, P, F, L and Z
  still switch modes.
- A banner (the canvas text overlay, :func:`text_overlay`) names each visible labels layer
  whose shown plane the segmentation's QC flagged, with the reasons, so a flagged slice
  never looks right.

:func:`install` is idempotent per viewer; the hooks hold the viewer weakly, so a closed
viewer is collected.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from napari.layers import Labels

from ..core.labels import BACKGROUND, LABELS
from .qt_common import is_helper, is_paraspinal
from .slices import flagged_planes

KEYS = tuple(str(v) for v in range(len(LABELS) + 1))  # "0" (eraser) to "8"
#: How the banner looks: red text on a dark box, top left of the canvas.
BANNER_STYLE = {"color": (1.0, 0.3, 0.2, 1.0), "position": "top_left", "font_size": 12,
                "box": True, "box_color": (0.0, 0.0, 0.0, 0.6)}

_HOOKS: dict[int, ViewerHooks] = {}


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


def text_overlay(viewer: Any) -> Any:
    """The viewer's canvas text overlay (``viewer.text_overlay`` before napari 0.9)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and "text" in overlays:
        return overlays["text"]
    return viewer.text_overlay


def install(viewer: Any) -> ViewerHooks:
    """The viewer's hooks, installed on first use."""
    hooks = _HOOKS.get(id(viewer))
    if hooks is not None and hooks.viewer() is viewer:
        return hooks
    hooks = ViewerHooks(viewer)
    _HOOKS[id(viewer)] = hooks
    weakref.finalize(viewer, _HOOKS.pop, id(viewer), None)
    return hooks


def install_current() -> None:
    """Install on napari's current viewer, if there is one (for sample data)."""
    from napari import current_viewer

    viewer = current_viewer()
    if viewer is not None:
        install(viewer)


class ViewerHooks:
    """Binds the label keys on inserted paraspinal labels layers and keeps the banner."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = weakref.ref(viewer)
        self.shown = ""  # the banner text this object set ("" when it shows none)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.update)
        viewer.dims.events.current_step.connect(self.update)
        for layer in viewer.layers:
            self._watch(layer)
        self.update()

    def banner(self) -> str:
        """The banner's lines for what is shown now ("" when nothing shown is flagged)."""
        viewer = self.viewer()
        if viewer is None:
            return ""
        layers = [ly for ly in viewer.layers if isinstance(ly, Labels) and not is_helper(ly)]
        # one reason a line: the overlay does not wrap, and a long line is cut off
        return "\n".join(line.replace("; ", "\n    ")
                         for line in flagged_planes(layers, viewer.dims.point))

    def update(self, *_: Any) -> None:
        """Show, change or hide the banner (a text overlay someone else set is left alone)."""
        viewer = self.viewer()
        if viewer is None:
            return
        text, overlay = self.banner(), text_overlay(viewer)
        if text:
            for name, value in BANNER_STYLE.items():
                setattr(overlay, name, value)
            overlay.text = text
            overlay.visible = True
            self.shown = text
        elif self.shown:
            if overlay.text == self.shown:
                overlay.text = ""
                overlay.visible = False
            self.shown = ""

    def _on_inserted(self, event: Any) -> None:
        self._watch(event.value)
        self.update()

    def _watch(self, layer: Any) -> None:
        if isinstance(layer, Labels) and is_paraspinal(layer):
            bind_label_keys(layer)
        for name in ("visible", "metadata", "name"):
            if hasattr(layer.events, name):
                getattr(layer.events, name).connect(self.update)
