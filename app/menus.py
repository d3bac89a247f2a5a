"""The app's menu entries in napari's menus: File › New project…, Open project…, Open
recent ›, Settings…; Help › About and Documentation.

Each entry calls a plain function of the window's :class:`.window.MainWindowState`; the file
dialogs are the state's ``choose_folder`` (injectable) and the Settings dialog is run by a
callable argument, so a test drives every entry without a modal dialog.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import QUrl
from qtpy.QtGui import QDesktopServices
from qtpy.QtWidgets import QDialog, QMenu, QMessageBox

from .about import TITLE, about_text, readme_path
from .settings import config_dir
from .settings_dialog import SettingsDialog
from .start_screen import is_project

if TYPE_CHECKING:
    from .window import MainWindowState

NEW, OPEN, RECENT, SETTINGS = "New project…", "Open project…", "Open recent", "Settings…"
ABOUT, DOCS = f"About {TITLE}", "Documentation"


def add_menus(state: MainWindowState) -> None:
    """Put the app's entries first in napari's File menu and last in its Help menu."""
    window = state.viewer.window
    file_menu = window.file_menu
    first = file_menu.actions()[0] if file_menu.actions() else None
    recent = QMenu(RECENT, file_menu)
    recent.aboutToShow.connect(_weak(state, lambda s: fill_recent(s, recent)))
    for text, slot in ((NEW, new_project), (OPEN, open_project)):
        action = file_menu.addAction(text)
        action.triggered.connect(_weak(state, slot))
        file_menu.insertAction(first, action)
    file_menu.insertMenu(first, recent)
    settings = file_menu.addAction(SETTINGS)
    settings.triggered.connect(_weak(state, edit_settings))
    file_menu.insertAction(first, settings)
    file_menu.insertSeparator(first)
    fill_recent(state, recent)
    state.recent_menu = recent

    help_menu = window.help_menu
    about = help_menu.addAction(ABOUT)
    about.triggered.connect(
        _weak(state, lambda s: QMessageBox.about(s.qt_window, ABOUT, about_text())))
    docs = help_menu.addAction(DOCS)
    docs.triggered.connect(_weak(state, show_documentation))


def _weak(state: MainWindowState, run: Callable[[MainWindowState], object]
          ) -> Callable[..., None]:
    """A slot running ``run(state)`` that holds ``state`` weakly: the menus may outlive the
    window for a while, and must not keep its closed viewer alive."""
    ref = weakref.ref(state)

    def slot(*_: object) -> None:
        alive = ref()
        if alive is not None:
            run(alive)

    return slot


def fill_recent(state: MainWindowState, menu: QMenu) -> None:
    """The recent projects that still exist, most recent first."""
    menu.clear()
    for folder in state.store.current.existing_recent():
        action = menu.addAction(f"{Path(folder).name}  ({folder})")
        action.setData(folder)
        action.triggered.connect(_weak(state, lambda s, f=folder: s.open_project(f)))
    menu.setEnabled(bool(menu.actions()))


def new_project(state: MainWindowState) -> bool:
    """Ask for an empty folder and make it the open project."""
    folder = state.choose_folder(state.qt_window, "New project: choose an empty folder",
                                 _start(state))
    if not folder:
        return False
    path = Path(folder)
    if path.is_dir() and any(path.iterdir()) and not is_project(path):
        QMessageBox.warning(state.qt_window, NEW,
                            f"{path} is not empty: choose an empty folder for a new project.")
        return False
    return state.open_project(path)


def open_project(state: MainWindowState) -> bool:
    """Ask for a project folder and open it."""
    folder = state.choose_folder(state.qt_window, "Open project folder", _start(state))
    return bool(folder) and state.open_project(folder)


def edit_settings(state: MainWindowState,
                  run: Callable[[SettingsDialog], int] = lambda dialog: dialog.exec()) -> bool:
    """File › Settings…: edit, then apply to the widgets and save (False when cancelled)."""
    dialog = SettingsDialog(state.store.current, state.choose_folder, state.qt_window)
    if run(dialog) != QDialog.DialogCode.Accepted:
        return False
    state.apply(dialog.settings())
    return True


def show_documentation(state: MainWindowState, open_url: Callable[[QUrl], bool] =
                       QDesktopServices.openUrl) -> Path | None:
    """Help › Documentation: open the local README (no internet needed); say where it is,
    or that there is none."""
    path = readme_path(config_dir() / "docs")
    if path is None:
        QMessageBox.information(state.qt_window, DOCS, "No README was installed with the app.")
        return None
    if not open_url(QUrl.fromLocalFile(str(path))):
        QMessageBox.information(state.qt_window, DOCS, f"The documentation is at\n{path}")
    return path


def _start(state: MainWindowState) -> str:
    last = state.store.current.last_folder
    return last if last and Path(last).is_dir() else str(Path.home())
