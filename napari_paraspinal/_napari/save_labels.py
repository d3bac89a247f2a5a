"""Ctrl+S on a paraspinal labels layer: NIfTI on the image's grid, next to the image, loudly.

napari's own Ctrl+S opens a dialog in the home folder with the TIFF filter first, and a failed
write only reaches stderr. For a paraspinal labels layer (:func:`.qt_common.is_paraspinal`)
Ctrl+S instead proposes ``<image stem>_labels.nii.gz`` in the image's folder, writes through
:func:`.writer.write_labels` (the file's own grid and geometry) and shows any failure in a
message box naming the file. Other layers keep napari's save.

:func:`save_labels_layer` is the headless part; :class:`SaveShortcut` the thin Qt part, whose
``ask_path`` and ``show_error`` are plain callables so a test can answer the dialog.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari.layers import Labels

from ..core.io import image_stem
from .qt_common import is_paraspinal
from .writer import write_labels

NIFTI_FILTER = "NIfTI labels on the image grid (*.nii.gz *.nii)"
FILTERS = f"{NIFTI_FILTER};;All files (*)"
#: Qt's name for the key, as napari's keymap spells it.
SAVE_KEY = "Control-S"
#: The napari command behind its own Ctrl+S (Save Selected Layers...).
NAPARI_SAVE_ID = "napari.window.file.save_layers_dialog.selected"

AskPath = Callable[[Any, Path], "str | None"]
ShowError = Callable[[Any, str], None]


def is_paraspinal_labels(layer: Any) -> bool:
    """A labels layer on a paraspinal image grid (not a helper layer)."""
    return isinstance(layer, Labels) and is_paraspinal(layer)


def default_path(layer: Any) -> Path:
    """``<image stem>_labels.nii.gz`` in the folder of the layer's source image.

    A DICOM series folder gives its parent folder and its own name; a layer whose source is
    no file on disk (sample data, ``<array>``, a moved file) gives the home folder and the
    layer's name.
    """
    source = str((layer.metadata or {}).get("source") or "")
    path = Path(source).absolute() if source else None
    if path is not None and path.is_dir():
        folder, stem = path.parent, path.name
    elif path is not None and path.is_file():
        folder, stem = path.parent, image_stem(path)
    else:
        folder, stem = Path.home(), re.sub(r"[^\w.-]+", "_", layer.name).strip("_") or "image"
    if stem.endswith("_labels") or stem.endswith(" labels"):
        stem = stem[: -len("_labels")]
    return folder / f"{stem}_labels.nii.gz"


def save_labels_layer(layer: Any, path: str | Path) -> list[str]:
    """Write ``layer`` as NIfTI on its image's native grid; the written paths.

    A path without a NIfTI suffix gets ``.nii.gz``. Raises ValueError for a layer that is not
    on a paraspinal image grid, and the writer's own error (OSError, ...) when writing fails.
    """
    if not is_paraspinal_labels(layer):
        raise ValueError(f"layer {layer.name!r} is not a labels layer on a paraspinal image "
                         "grid, so its geometry is unknown")
    return write_labels(str(path), layer.data, {"metadata": layer.metadata})


def ask_save_path(parent: Any, default: Path) -> str | None:
    """A save dialog opened on ``default`` with the NIfTI filter first (None: cancelled)."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(parent, "Save paraspinal labels (NIfTI)",
                                          str(default), FILTERS)
    return path or None


def show_error_box(parent: Any, message: str) -> None:
    """A warning box: a failed save must be seen, not only logged."""
    from qtpy.QtWidgets import QMessageBox

    QMessageBox.warning(parent, "Labels not saved", message)


def save_with_dialog(layer: Any, ask_path: AskPath = ask_save_path,
                     show_error: ShowError = show_error_box, parent: Any = None) -> list[str]:
    """Ask where, save, and show any failure; the written paths ([] if cancelled or failed)."""
    path = ask_path(parent, default_path(layer))
    if not path:
        return []
    try:
        written = save_labels_layer(layer, path)
    except Exception as err:  # noqa: BLE001 - every failure is shown to the user
        show_error(parent, f"Could not save {layer.name!r} to {path}:\n"
                           f"{type(err).__name__}: {err}")
        return []
    if not written:
        show_error(parent, f"Could not save {layer.name!r} to {path}: nothing was written")
    return written


class SaveShortcut:
    """Ctrl+S of one viewer: paraspinal labels through :func:`save_with_dialog`, else napari's.

    In a Qt window the key is a menu shortcut of napari's "Save Selected Layers...", which
    fires before any keymap; so that action's shortcut is taken over by a window action of
    ours, which hands other layers back to it. The viewer keymap gets the same binding for
    keys that reach the canvas without the window (no Qt main window).
    """

    def __init__(self, viewer: Any) -> None:
        viewer = getattr(viewer, "__wrapped__", viewer)  # Qt wants the window, not a proxy
        self.viewer = weakref.ref(viewer)  # the hooks are kept per viewer: no cycle through us
        self.ask_path: AskPath = ask_save_path
        self.show_error: ShowError = show_error_box
        self.napari_action: Any = None  # napari's Save Selected Layers... action
        self.action: Any = None  # ours, on the window
        self.last_written: list[str] = []
        viewer.bind_key(SAVE_KEY, self._on_key, overwrite=True)
        window = getattr(getattr(viewer, "window", None), "_qt_window", None)
        if window is not None:
            self._take_over(window)

    def trigger(self) -> list[str] | None:
        """Save the active layer: ours for paraspinal labels (written paths), else napari's
        save (None)."""
        viewer = self.viewer()
        if viewer is None:
            return None
        layer = viewer.layers.selection.active
        if is_paraspinal_labels(layer):
            parent = getattr(getattr(viewer, "window", None), "_qt_window", None)
            self.last_written = save_with_dialog(layer, self.ask_path, self.show_error, parent)
            return self.last_written
        if self.napari_action is not None:
            self.napari_action.trigger()
        return None

    def _on_key(self, _viewer: Any) -> None:
        self.trigger()

    def _take_over(self, window: Any) -> None:
        from qtpy.QtGui import QAction, QKeySequence

        self.napari_action = _find_action(window.menuBar(), NAPARI_SAVE_ID)
        if self.napari_action is None:
            return
        keys = self.napari_action.shortcuts() or [QKeySequence(QKeySequence.StandardKey.Save)]
        _release(self.napari_action)
        self.action = QAction("Save (paraspinal labels: NIfTI)", window)
        self.action.setShortcuts(keys)
        self.action.triggered.connect(lambda *_: self.trigger())
        window.addAction(self.action)
        napari_action = self.napari_action
        self.action.destroyed.connect(lambda *_: _restore(napari_action))


#: napari's save action, taken by how many windows, and its own shortcuts. The action is
#: shared by every window of the app, so its shortcut comes back when the last window closes.
_TAKEN: dict[int, tuple[int, list]] = {}


def _release(action: Any) -> None:
    count, keys = _TAKEN.get(id(action), (0, list(action.shortcuts())))
    _TAKEN[id(action)] = (count + 1, keys)
    action.setShortcuts([])


def _restore(action: Any) -> None:
    count, keys = _TAKEN.get(id(action), (1, []))
    if count > 1:
        _TAKEN[id(action)] = (count - 1, keys)
        return
    _TAKEN.pop(id(action), None)
    try:
        action.setShortcuts(keys)
    except RuntimeError:  # the action itself is gone with the app
        pass


def _find_action(menu_bar: Any, command_id: str) -> Any:
    """The menu action running app-model command ``command_id``, or None."""
    todo = [a.menu() for a in menu_bar.actions() if a.menu() is not None]
    while todo:
        for action in todo.pop().actions():
            if action.menu() is not None:
                todo.append(action.menu())
            elif getattr(action, "_command_id", None) == command_id:
                return action
    return None
