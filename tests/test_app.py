"""The standalone app: napari with every paraspinal widget docked, files and a project open."""

from __future__ import annotations

import os

import pytest

from napari_paraspinal.core.writers import write_image
from napari_paraspinal.phantom import PhantomConfig, generate_phantom

pytestmark = pytest.mark.gui
needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run")


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """The app's settings in a temporary folder, never the user's."""
    folder = tmp_path / "config"
    monkeypatch.setenv("PARASPINAL_APP_CONFIG_DIR", str(folder))
    return folder


@pytest.mark.skipif(not os.environ.get("DISPLAY"),
                    reason="napari's canvas needs a display: run under xvfb-run")
def test_app_docks_the_widgets_and_opens_files_and_a_project(qtbot, tmp_path) -> None:
    from paraspinal_app.main import WIDGETS, build_parser, open_viewer

    case = generate_phantom(11, PhantomConfig(level="L5-S1"))
    path = write_image(case.image, tmp_path / "slice.nii.gz")
    args = build_parser().parse_args([str(path), "--project", str(tmp_path / "study")])
    viewer = open_viewer(args.files, args.sample, args.project, show=False)
    try:
        from napari.layers import Image

        assert [ly.name for ly in viewer.layers if isinstance(ly, Image)] == ["slice"]
        docked = set(viewer.window._dock_widgets)
        assert {f"{name} (napari-paraspinal)" for name in WIDGETS} <= docked
        assert (tmp_path / "study" / "project.sqlite").is_file()
    finally:
        viewer.close()


def test_version_and_about_name_the_software_model_and_licence(capsys) -> None:
    from paraspinal_app.main import about_text, build_parser

    from napari_paraspinal import __version__
    from napari_paraspinal.nets.bundle import load_card
    from napari_paraspinal.segment import default_model_path

    card = load_card(default_model_path())
    text = about_text()
    assert f"napari-paraspinal {__version__}" in text
    assert f"{card.name} v{card.version}" in text and card.weights_sha256[:12] in text
    assert "BSD-3-Clause" in text
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == text


@pytest.mark.skipif(not os.environ.get("DISPLAY"),
                    reason="napari's canvas needs a display: run under xvfb-run")
def test_window_names_the_project_shows_segment_first_and_has_about(qtbot, tmp_path) -> None:
    from paraspinal_app.main import WIDGETS, open_viewer

    viewer = open_viewer(project=str(tmp_path / "spine study"), show=True)
    try:
        window = viewer.window._qt_window
        assert window.windowTitle() == "napari-paraspinal — spine study"
        docks = viewer.window._dock_widgets
        first = docks[f"{WIDGETS[0]} (napari-paraspinal)"]
        others = [docks[f"{name} (napari-paraspinal)"] for name in WIDGETS[1:]]
        qtbot.waitUntil(lambda: not first.visibleRegion().isEmpty(), timeout=5000)
        assert all(d.visibleRegion().isEmpty() for d in others if d in
                   window.tabifiedDockWidgets(first))
        titles = [a.text() for a in viewer.window.help_menu.actions()]
        assert "About napari-paraspinal" in titles
        # another project opened from the Project widget renames the window too
        from napari_paraspinal._napari.project_widget import ProjectWidget

        (widget,) = window.findChildren(ProjectWidget)
        assert widget.open_project(tmp_path / "second") is not None
        assert window.windowTitle() == "napari-paraspinal — second"
    finally:
        viewer.close()


def _docks(viewer) -> dict:
    from paraspinal_app.window import state_of

    return state_of(viewer).docks


@needs_display
def test_settings_reach_the_widgets_and_the_settings_dialog_changes_them(qtbot,
                                                                         tmp_path) -> None:
    from paraspinal_app.menus import edit_settings, show_documentation
    from paraspinal_app.settings import SettingsStore
    from paraspinal_app.window import open_viewer, state_of
    from qtpy.QtWidgets import QDialog

    model = tmp_path / "my model"
    model.mkdir()
    store = SettingsStore()
    store.update(device="cpu", fat_method="kmeans", model_path=str(model))
    viewer = open_viewer(show=False, store=SettingsStore())  # read back from the file
    try:
        state = state_of(viewer)
        w = state.widgets
        assert w["Segment"].device_combo.currentText() == "cpu"
        assert w["Segment"].model_path == model
        assert w["Segment"].model_combo.currentText() == "folder: my model"
        assert w["Project and fine-tune"].device_combo.currentText() == "cpu"
        assert w["Fat and areas"].method_combo.currentText() == "kmeans"
        assert w["Export"].method_combo.currentText() == "kmeans"

        def change(dialog) -> int:  # the user's choices, without a modal dialog
            assert dialog.device_combo.currentText() == "cpu"
            dialog.device_combo.setCurrentText("auto")
            dialog.shipped_button.click()
            dialog.method_combo.setCurrentText("otsu")
            return QDialog.DialogCode.Accepted

        assert not edit_settings(state, run=lambda d: QDialog.DialogCode.Rejected)
        assert w["Fat and areas"].method_combo.currentText() == "kmeans"
        assert edit_settings(state, run=change)
        assert w["Segment"].device_combo.currentText() == "auto"
        assert w["Segment"].model_path is None
        assert w["Fat and areas"].method_combo.currentText() == "otsu"
        assert w["Export"].method_combo.currentText() == "otsu"
        saved = SettingsStore().current
        assert (saved.device, saved.model_path, saved.fat_method) == ("auto", None, "otsu")

        opened = []  # Help › Documentation: the local README, no internet
        readme = show_documentation(state, open_url=lambda url: opened.append(url) or True)
        assert readme is not None and readme.name == "README.md" and readme.is_file()
        assert [url.toLocalFile() for url in opened] == [str(readme)]
    finally:
        viewer.close()


@needs_display
def test_a_project_puts_the_worklist_left_and_is_remembered(qtbot, tmp_path) -> None:
    """No project: every widget tabbed right. A project opened from File › New project…
    moves the worklist left, full height; tabs keep whole titles; menus are there; the
    project becomes the most recent one and the geometry is restored next time."""
    from paraspinal_app import menus
    from paraspinal_app.settings import SettingsStore
    from paraspinal_app.window import PROJECT_WIDGET, open_viewer, state_of
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QTabBar

    viewer = open_viewer(show=True)
    try:
        state = state_of(viewer)
        window, docks = state.qt_window, state.docks
        qtbot.waitUntil(lambda: not docks["Segment"].visibleRegion().isEmpty(), timeout=5000)
        assert docks[PROJECT_WIDGET] in window.tabifiedDockWidgets(docks["Segment"])
        files = [a.text() for a in viewer.window.file_menu.actions()]
        assert files[:4] == [menus.NEW, menus.OPEN, menus.RECENT, menus.SETTINGS]
        helps = [a.text() for a in viewer.window.help_menu.actions()]
        assert menus.ABOUT in helps and menus.DOCS in helps
        assert not state.recent_menu.isEnabled()  # nothing recent yet

        state.choose_folder = lambda *_: str(tmp_path / "study")
        assert menus.new_project(state)
        project = docks[PROJECT_WIDGET]
        qtbot.waitUntil(lambda: not project.visibleRegion().isEmpty(), timeout=5000)
        assert window.dockWidgetArea(project) == Qt.DockWidgetArea.LeftDockWidgetArea
        assert not window.tabifiedDockWidgets(project)
        right = [docks[n] for n in ("Fat and areas", "Export", "Labels legend")]
        assert set(window.tabifiedDockWidgets(docks["Segment"])) == set(right)
        assert window.dockWidgetArea(docks["Segment"]) == Qt.DockWidgetArea.RightDockWidgetArea
        assert project.height() >= 0.9 * window.centralWidget().height()  # full height
        qtbot.waitUntil(lambda: all(d.visibleRegion().isEmpty() for d in right),
                        timeout=5000)  # Segment in front
        bars = [b for b in window.findChildren(QTabBar) if b.isVisible() and b.count()]
        assert bars
        for bar in bars:  # every tab's whole title fits
            for i in range(bar.count()):
                text = bar.tabText(i)
                assert bar.tabRect(i).width() >= bar.fontMetrics().horizontalAdvance(text)
        recent = SettingsStore().current.recent_projects
        assert recent == (str((tmp_path / "study").resolve()),)
        state.recent_menu.aboutToShow.emit()
        assert [a.data() for a in state.recent_menu.actions()] == list(recent)
        window.resize(1200, 720)
    finally:
        viewer.close()
    assert SettingsStore().current.geometry  # saved on close
    viewer = open_viewer(show=True)
    try:
        window = viewer.window._qt_window
        qtbot.waitExposed(window)
        assert (window.width(), window.height()) == (1200, 720)
    finally:
        viewer.close()


@needs_display
def test_drafts_survive_a_killed_app_and_show_when_reopened_from_the_start_screen(
        qtbot, tmp_path) -> None:
    """Edits kept as a draft by the Project widget, the viewer dropped without closing, a
    new main window opened on the recent project from the start screen: the worklist says
    "unsaved draft" and opening the case shows the edits, still unsaved."""
    import numpy as np
    from paraspinal_app.settings import SettingsStore
    from paraspinal_app.start_screen import StartScreen
    from paraspinal_app.window import PROJECT_WIDGET, open_viewer, state_of

    from napari_paraspinal._napari import project_tasks as tasks
    from napari_paraspinal.core.labels import ES_R
    from napari_paraspinal.project import Project

    case = generate_phantom(5, PhantomConfig(level="L4-L5"))
    path = write_image(case.image, tmp_path / "p5.nii.gz")
    with Project.init(tmp_path / "study") as store:
        (cid,) = store.add([path]).ids
        store.save_labels(cid, case.labels, "automatic")
    first = open_viewer(project=str(tmp_path / "study"), show=False)
    second = None
    try:
        widget = state_of(first).widgets[PROJECT_WIDGET]
        assert widget.open_case(cid)
        labels = first.layers[f"{cid} labels"]
        labels.data_setitem((np.arange(6), np.arange(6)), ES_R)
        edited = np.array(labels.data)
        assert widget.close_case()  # what switching cases does: the edits become a draft
        assert tasks.draft_path(widget.project, cid).is_file()

        # the app is "killed": the first viewer is never closed; a new run starts
        screen = StartScreen(SettingsStore())
        qtbot.addWidget(screen)
        launches = []
        screen.chosen.connect(launches.append)
        assert screen.recent_list.count() == 1
        screen.recent_list.itemActivated.emit(screen.recent_list.item(0))
        (launch,) = launches
        second = open_viewer(launch.files, launch.sample, launch.project, show=False)
        reopened = state_of(second).widgets[PROJECT_WIDGET]
        assert reopened.project is not None and reopened.worklist_ids() == [cid]
        assert reopened.table.item(0, 5).text() == "unsaved draft"
        assert reopened.open_case(cid)
        shown = second.layers[f"{cid} labels"]
        np.testing.assert_array_equal(shown.data, edited)
        assert tasks.needs_saving(shown) and "draft" in reopened.status.text()
        with Project.open(tmp_path / "study") as store:
            assert store.latest_version(cid).version == 1  # still not saved as a version
    finally:
        if second is not None:
            second.close()
        first.close()


def test_no_arguments_means_the_start_screen() -> None:
    """The parser: no arguments means the start screen; files, a project or a sample, or
    --no-start-screen, the main window at once."""
    from paraspinal_app.main import build_parser, wants_start_screen

    parser = build_parser()
    assert wants_start_screen(parser.parse_args([]))
    for argv in (["a.nii.gz"], ["--project", "p"], ["--sample", "L4-L5"],
                 ["--no-start-screen"]):
        assert not wants_start_screen(parser.parse_args(argv))
