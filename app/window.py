"""The main window: napari with the plugin's widgets docked, the settings applied, a project.

Without a project the five widgets are tabbed on the right, Segment shown first. With a
project (opened at start, from a menu or from the Project widget) the worklist comes first:
the Project widget moves to the left, full height, and the others stay tabbed on the right.
Tabs never elide their titles. The settings (device, model, fat method) are set through the
widgets' own controls when the window opens and whenever they are changed; an opened project
becomes the most recent one; the window's geometry is restored and saved on close.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

from qtpy.QtCore import QByteArray, QEvent, QObject, QSignalBlocker, QSize, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QFrame, QLabel, QMainWindow, QScrollArea, QTabBar

from .about import TITLE
from .settings import AppSettings, SettingsStore
from .start_screen import ChooseFolder, dialog_folder

PLUGIN = "napari-paraspinal"
#: The plugin's dock widgets, in the order the app shows them.
WIDGETS = ("Segment", "Fat and areas", "Export", "Labels legend", "Project and fine-tune")
PROJECT_WIDGET = "Project and fine-tune"
#: The docks' titles (their tabs' text); napari's own names add "(napari-paraspinal)".
TAB_TITLES = {"Labels legend": "Legend", PROJECT_WIDGET: "Project"}
#: The narrowest a dock may get: its widgets' labels and a tab's title stay readable (the
#: docks' own widgets and tab bars may ask for more).
DOCK_MIN_WIDTH = 280
#: The Project dock's width when the window has room for it.
PROJECT_WIDTH = 460
#: Below this share of the window's width the image canvas is too narrow to work in: the
#: docks are narrowed to their least width (a 1280 px wide window with the worklist).
MIN_CANVAS_SHARE = 0.4
#: The least height of the scrolled Project dock.
DOCK_MIN_HEIGHT = 200
#: The attribute of the viewer's Qt window holding its :class:`MainWindowState`.
STATE_ATTR = "_paraspinal_state"


def window_title(project: str | None = None) -> str:
    """The main window's title: the product, and the open project's folder name."""
    return f"{TITLE} — {Path(project).name}" if project else TITLE


class MainWindowState(QObject):
    """The app's part of a viewer: its docks and widgets, the settings, the recent project
    bookkeeping and the geometry saved on close."""

    def __init__(self, viewer: Any, docks: dict[str, QDockWidget], widgets: dict[str, Any],
                 store: SettingsStore) -> None:
        super().__init__(viewer.window._qt_window)
        # held weakly: this object lives as long as the Qt window, whose deletion comes
        # after the viewer is closed, and must not keep the closed viewer alive
        self._viewer = weakref.ref(viewer)
        self.docks: MutableMapping[str, QDockWidget] = weakref.WeakValueDictionary(docks)
        self.widgets: MutableMapping[str, Any] = weakref.WeakValueDictionary(widgets)
        self.store = store
        self.qt_window: QMainWindow = viewer.window._qt_window
        self._remembered: str | None = None
        self.choose_folder: ChooseFolder = dialog_folder  # the menus' folder dialog
        self.recent_menu: Any = None  # File › Open recent (set by .menus)
        self.qt_window.installEventFilter(self)
        viewer.events.title.connect(self._on_title)  # a method: psygnal holds it weakly

    @property
    def viewer(self) -> Any:
        """The viewer (None once it is gone)."""
        return self._viewer()

    def _on_title(self, _event: Any = None) -> None:
        self.project_changed()

    @property
    def project_widget(self) -> Any:
        return self.widgets[PROJECT_WIDGET]

    def open_project(self, folder: str | os.PathLike[str]) -> bool:
        """Open (or create) the project through the Project widget, so its drafts show."""
        if self.project_widget.open_project(folder) is None:
            return False
        self.project_changed()  # the title may not change (a project of the same name)
        return True

    def project_changed(self) -> None:
        """A project was opened (the widget renames the viewer): worklist left, and it is
        the most recent project."""
        project = self.project_widget.project
        if project is None:
            return
        root = str(Path(project.root).resolve())
        arrange(self.qt_window, self.docks, worklist=True)
        if root != self._remembered:
            self._remembered = root
            self.store.add_recent(root)

    def apply(self, settings: AppSettings) -> None:
        """Use ``settings`` in the widgets and remember them."""
        if settings != self.store.current:
            self.store.replace(settings)
        apply_settings(self.widgets, settings)

    def restore_geometry(self) -> bool:
        """The window's size and place of the last run (False when none was saved)."""
        saved = self.store.current.geometry
        if not saved:
            return False
        return bool(self.qt_window.restoreGeometry(QByteArray.fromBase64(saved.encode())))

    def save_geometry(self) -> None:
        data = bytes(self.qt_window.saveGeometry().toBase64()).decode("ascii")
        if data != self.store.current.geometry:
            self.store.update(geometry=data)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        window = vars(self).get("qt_window")  # absent when Qt outlived this Python object
        if window is None or watched is not window:
            return False
        if event.type() == QEvent.Type.Close:
            self.save_geometry()
            window.removeEventFilter(self)  # nothing more to do for a closed window
        elif event.type() == QEvent.Type.Resize:
            docks = self.docks
            QTimer.singleShot(0, lambda: fit_docks(window, docks))
        return False


def state_of(viewer: Any) -> MainWindowState:
    """The app's state of a viewer made by :func:`open_viewer`."""
    return getattr(viewer.window._qt_window, STATE_ATTR)


def apply_settings(widgets: dict[str, Any], settings: AppSettings) -> None:
    """Set the device, model and fat method through the widgets' own controls."""
    segment = widgets.get("Segment")
    if segment is not None:
        segment.device_combo.setCurrentText(settings.device)
        model = settings.model_path
        if model is not None and Path(model).is_dir():
            if segment.model_path is None or Path(segment.model_path) != Path(model):
                segment.set_model_path(model)
        else:
            segment.set_model_path(None)
    project = widgets.get(PROJECT_WIDGET)
    if project is not None:
        project.device_combo.setCurrentText(settings.device)
    for name in ("Fat and areas", "Export"):
        widget = widgets.get(name)
        if widget is not None:
            widget.method_combo.setCurrentText(settings.fat_method)


def arrange(window: QMainWindow, docks: dict[str, QDockWidget], worklist: bool) -> None:
    """Place the docks whatever napari remembered: every dock tabbed on the right, or with
    ``worklist`` the Project dock on the left, full height, beside napari's layer docks.
    Done with the dock's signals blocked, so napari does not remember the move as the
    widget's default place (the layout would follow into runs without a project)."""
    segment, project = docks[WIDGETS[0]], docks[PROJECT_WIDGET]
    right = Qt.DockWidgetArea.RightDockWidgetArea
    if window.dockWidgetArea(segment) != right:
        with QSignalBlocker(segment):
            window.removeDockWidget(segment)
            window.addDockWidget(right, segment)
            segment.show()
    for dock in docks.values():
        if dock is segment or (worklist and dock is project):
            continue
        if window.dockWidgetArea(dock) != right or dock not in window.tabifiedDockWidgets(
                segment):
            with QSignalBlocker(dock):
                window.removeDockWidget(dock)
                window.addDockWidget(right, dock)
                window.tabifyDockWidget(segment, dock)
                dock.show()
    left = Qt.DockWidgetArea.LeftDockWidgetArea
    if worklist and (window.dockWidgetArea(project) != left
                     or window.tabifiedDockWidgets(project)):
        with QSignalBlocker(project):
            window.removeDockWidget(project)
            window.addDockWidget(left, project, Qt.Orientation.Horizontal)
            project.show()
        window.resizeDocks([project], [PROJECT_WIDTH], Qt.Orientation.Horizontal)
    QTimer.singleShot(0, lambda: _after_layout(window, docks))


def fit_docks(window: QMainWindow, docks: dict[str, QDockWidget]) -> bool:
    """Give the image canvas room: when it is narrower than :data:`MIN_CANVAS_SHARE` of the
    window, narrow the shown paraspinal docks (Qt keeps each at least its minimum width);
    when the canvas has room again, widen the Project dock back to :data:`PROJECT_WIDTH`.
    Returns whether the docks were narrowed."""
    central = window.centralWidget()
    if central is None or window.width() <= 0:
        return False
    shown = [d for d in docks.values() if d.isVisible() and not d.isFloating()
             and not d.visibleRegion().isEmpty()]
    if not shown:
        return False
    if central.width() >= MIN_CANVAS_SHARE * window.width():
        project = docks.get(PROJECT_WIDGET)  # room again: the worklist's own width
        grow = PROJECT_WIDTH - (project.width() if project is not None else PROJECT_WIDTH)
        if project in shown and grow > 0 and \
                central.width() - grow >= MIN_CANVAS_SHARE * window.width():
            window.resizeDocks([project], [PROJECT_WIDTH], Qt.Orientation.Horizontal)
        return False
    window.resizeDocks(shown, [d.minimumSizeHint().width() for d in shown],
                       Qt.Orientation.Horizontal)
    return True


class VerticalScroll(QScrollArea):
    """A scroll area that scrolls only up and down: at least as wide as its widget's least
    width and the scroll bar, whatever the widget shows later (a project's summary, a
    case), so nothing is cut at the right."""

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        hint = super().minimumSizeHint()
        inner = self.widget()
        if inner is None:
            return hint
        width = (inner.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
                 + 2 * self.frameWidth())
        return QSize(max(hint.width(), width), hint.height())

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the widget's least width may have changed
        return super().event(event)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)


def scrollable(dock: QDockWidget) -> None:
    """Put the dock's widget in a scroll area: a tall widget (the Project widget's worklist,
    jobs and models) must not make the window taller than the screen."""
    inner = dock.widget()
    scroll = VerticalScroll()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(inner)
    dock.setWidget(scroll)
    dock.setMinimumHeight(DOCK_MIN_HEIGHT)  # else the dock keeps the widget's full height


def short_title_bars(docks: dict[str, QDockWidget]) -> None:
    """The widgets' names in napari's dock title bars, without "(napari-paraspinal)": the
    whole title then fits a narrow dock (the tabs' titles are shorter still)."""
    for name, dock in docks.items():
        label = getattr(dock.titleBarWidget(), "title", None)
        if isinstance(label, QLabel) and label.text() != name:
            label.setText(name)
            label.setToolTip(f"{name} ({PLUGIN})")


def _after_layout(window: QMainWindow, docks: dict[str, QDockWidget]) -> None:
    """Once Qt laid the docks out: Segment in front, tab titles never elided, title bars
    short."""
    short_title_bars(docks)  # napari makes a new title bar when a dock is docked again
    segment = docks.get(WIDGETS[0])
    if segment is not None:
        segment.raise_()
    titles = {dock.windowTitle(): dock for dock in docks.values()}
    for bar in window.findChildren(QTabBar):
        bar.setElideMode(Qt.TextElideMode.ElideNone)
        bar.setUsesScrollButtons(True)
        bar.setExpanding(False)
        tabbed = [titles[bar.tabText(i)] for i in range(bar.count()) if bar.tabText(i) in titles]
        need = sum(bar.tabSizeHint(i).width() for i in range(bar.count()))
        for dock in tabbed:  # wide enough for every tab's whole title
            dock.setMinimumWidth(max(DOCK_MIN_WIDTH, need + 8))
    fit_docks(window, docks)


def open_viewer(files: Sequence[str] = (), sample: str | None = None,
                project: str | None = None, show: bool = True,
                store: SettingsStore | None = None, viewer: Any = None) -> Any:
    """A napari viewer with the plugin's widgets docked, the settings applied, and the given
    files, phantom and project opened. ``store`` defaults to the user's settings; ``viewer``
    (default: a new one) is an empty viewer to build on, e.g. from napari's test fixture."""
    from .menus import add_menus

    store = store if store is not None else SettingsStore()
    if viewer is None:
        import napari

        viewer = napari.Viewer(title=window_title(project), show=False)
    else:
        viewer.title = window_title(project)
    docks: dict[str, QDockWidget] = {}
    widgets: dict[str, Any] = {}
    for k, name in enumerate(WIDGETS):
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=k > 0)
        dock.setMinimumWidth(DOCK_MIN_WIDTH)
        dock.setWindowTitle(TAB_TITLES.get(name, name))  # the tab's text: short, never cut
        docks[name], widgets[name] = dock, widget
    scrollable(docks[PROJECT_WIDGET])
    short_title_bars(docks)
    window = viewer.window._qt_window
    state = MainWindowState(viewer, docks, widgets, store)
    setattr(window, STATE_ATTR, state)
    add_menus(state)
    apply_settings(widgets, store.current)
    # every dock tabbed right (Segment raised once the docks are laid out: raising earlier
    # is undone by the tabifying); a project below moves the worklist left
    arrange(window, docks, worklist=False)
    state.restore_geometry()
    if show:
        viewer.window.show()
    if project:
        state.open_project(project)
    if files:
        viewer.open(list(files), plugin=PLUGIN)
    if sample:
        key = "phantom_l4l5" if sample == "L4-L5" else "phantom_l5s1"
        viewer.open_sample(PLUGIN, key)
    return viewer
