"""What every paraspinal widget installs on its viewer: label keys, help, banner, markers, save.

- Keys 1–8 pick that label (paint mode) and 0 the eraser on every paraspinal labels layer
  (one on an image grid of this plugin, not a helper layer), whichever widget is docked.
  They are bound on the layer itself (``layer.bind_key(..., overwrite=True)``) as it is
  inserted: a layer's own keymap comes before napari's Labels defaults, where the digits
  switch modes (3 would leave painting for another tool). The letters E, P, F, L and Z
  still switch modes.
- The status bar's help line, while a paraspinal labels layer is active, names these keys
  (:func:`help_text`) instead of napari's digit mode keys, and follows the mode and label.
- A banner (the canvas text overlay, :func:`text_overlay`) names each visible labels layer
  whose shown plane the segmentation's QC flagged, with the reasons, so a flagged slice
  never looks right.
- Orientation letters (R, L, A, P) at the image edges (:mod:`.orientation_markers`).
- Ctrl+S saves a paraspinal labels layer as NIfTI on its image's grid (:mod:`.save_labels`).

:func:`install` is idempotent per viewer; the hooks hold the viewer weakly, so a closed
viewer is collected.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from napari.layers import Labels

from ..core.labels import BACKGROUND, BY_VALUE, LABELS
from .orientation_markers import is_marker_layer, update_markers
from .qt_common import is_helper, is_paraspinal
from .save_labels import SaveShortcut
from .slices import flagged_planes

KEYS = tuple(str(v) for v in range(len(LABELS) + 1))  # "0" (eraser) to "8"
#: How the banner looks: red text on a dark box, top left of the canvas.
BANNER_STYLE = {"color": (1.0, 0.3, 0.2, 1.0), "position": "top_left", "font_size": 12,
                "box": True, "box_color": (0.0, 0.0, 0.0, 0.6)}

#: The keys, as the help line spells them.
KEYS_HELP = ("keys: 1-8 pick a label (" + ", ".join(f"{lab.value} {lab.short}" for lab in LABELS)
             + "), 0 eraser, E/P/F/L/Z erase/paint/fill/pick/pan modes, Ctrl+S save NIfTI")

_HOOKS: dict[int, ViewerHooks] = {}


def selected_text(layer: Labels | None) -> str:
    """What the active labels layer will do next, e.g. ``painting 5 MF_L`` or ``eraser``."""
    if layer is None:
        return "no labels layer selected"
    mode = str(getattr(layer.mode, "value", layer.mode))
    if mode == "erase":
        return "eraser (0)"
    value = int(layer.selected_label)
    name = f"{value} {BY_VALUE[value].short}" if value in BY_VALUE else str(value)
    return f"painting {name}" if mode == "paint" else f"label {name} ({mode})"


def help_text(layer: Labels) -> str:
    """The status bar's help for a paraspinal labels layer: what it does now, and the keys."""
    return f"{selected_text(layer)}; {KEYS_HELP}"


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
    viewer = getattr(viewer, "__wrapped__", viewer)  # the viewer behind napari's plugin proxy
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
    """Binds the label keys and help on paraspinal labels layers; keeps banner and markers."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = weakref.ref(viewer)
        self.shown = ""  # the banner text this object set ("" when it shows none)
        self.saver = SaveShortcut(viewer)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.dims.events.current_step.connect(self.update)
        for layer in viewer.layers:
            self._watch(layer)
        self.update()
        update_markers(viewer)

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
        if is_marker_layer(event.value):
            return
        self._watch(event.value)
        self.update()
        viewer = self.viewer()
        if viewer is not None:
            update_markers(viewer)

    def _on_removed(self, event: Any) -> None:
        self.update()
        viewer = self.viewer()
        if viewer is not None and not is_marker_layer(event.value):
            update_markers(viewer)

    def _watch(self, layer: Any) -> None:
        if isinstance(layer, Labels) and is_paraspinal(layer):
            bind_label_keys(layer)
            for event in (layer.events.mode, layer.events.selected_label, layer.events.help):
                event.connect(self._show_help)
            self._show_help(layer)
        for name in ("visible", "metadata", "name"):
            if hasattr(layer.events, name):
                getattr(layer.events, name).connect(self.update)

    def _show_help(self, source: Any) -> None:
        """Put the plugin's keys in the layer's help (napari rewrites it on mode changes)."""
        layer = source if isinstance(source, Labels) else source.source  # layer or event
        if not (isinstance(layer, Labels) and is_paraspinal(layer)):
            return
        text = help_text(layer)
        if layer.help != text:
            layer.help = text  # emits help again, which finds it equal
        viewer = self.viewer()
        if viewer is not None and viewer.layers.selection.active is layer:
            viewer.help = text
