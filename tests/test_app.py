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
