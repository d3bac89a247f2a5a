"""The standalone app: napari with every paraspinal widget docked, files and a project open."""

from __future__ import annotations

import os

import pytest

from napari_paraspinal.core.writers import write_image
from napari_paraspinal.phantom import PhantomConfig, generate_phantom

pytestmark = pytest.mark.gui


@pytest.mark.skipif(not os.environ.get("DISPLAY"),
                    reason="napari's canvas needs a display: run under xvfb-run")
def test_app_docks_the_widgets_and_opens_files_and_a_project(qtbot, tmp_path) -> None:
    from paraspinal_app.main import WIDGETS, build_parser, open_viewer

    case = generate_phantom(11, PhantomConfig(level="L5-S1"))
    path = write_image(case.image, tmp_path / "slice.nii.gz")
    args = build_parser().parse_args([str(path), "--project", str(tmp_path / "study")])
    viewer = open_viewer(args.files, args.sample, args.project, show=False)
    try:
        assert [layer.name for layer in viewer.layers] == ["slice"]
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
