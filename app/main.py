"""``paraspinal-app``: the standalone desktop application.

It opens napari with the paraspinal plugin's readers, sample data and every dock widget
(Segment first; the others tabbed beside it), and optionally a project, so annotators get the
same core and widgets as the plugin in a window of their own.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

TITLE = "napari-paraspinal"
LICENCE = "BSD-3-Clause"


def about_text() -> str:
    """What Help › About says: version, the shipped model (name, version, weights hash) and
    the licence; a plain function so the command line (``--version``) says the same."""
    from napari_paraspinal import __version__
    from napari_paraspinal.segment import default_model_path

    lines = [f"{TITLE} {__version__}"]
    try:
        from napari_paraspinal.nets.bundle import load_card

        card = load_card(default_model_path())
        sha = card.weights_sha256[:12]
        lines.append(f"model: {card.name} v{card.version} (weights {sha})")
    except Exception as err:  # noqa: BLE001  a missing or broken model must not stop About
        lines.append(f"model: none usable ({type(err).__name__})")
    lines.append(f"licence: {LICENCE}")
    return "\n".join(lines)


def window_title(project: str | None = None) -> str:
    """The main window's title: the product, and the open project's folder name."""
    return f"{TITLE} — {Path(project).name}" if project else TITLE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paraspinal-app",
                                     description="Open lumbar MRI slices for segmentation.",
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--version", action="version", version=about_text())
    parser.add_argument("files", nargs="*", help="DICOM, NIfTI, NRRD or MHA files or folders")
    parser.add_argument("--sample", choices=["L4-L5", "L5-S1"], default=None,
                        help="open a phantom slice of this level")
    parser.add_argument("--project", default=None,
                        help="project folder to open in the Project widget (created if new)")
    parser.add_argument("--self-test", action="store_true",
                        help="run the demo headless in a temporary folder, check its "
                             "spreadsheet and label maps,\nopen and close the main window; "
                             "exit 0 when all passed")
    return parser


#: The plugin's dock widgets, in the order the app shows them.
WIDGETS = ("Segment", "Fat and areas", "Export", "Labels legend", "Project and fine-tune")


def open_viewer(files: Sequence[str] = (), sample: str | None = None,
                project: str | None = None, show: bool = True):  # noqa: ANN201
    """A napari viewer with the plugin's widgets docked and the given files (and optionally a
    phantom, and a project) opened."""
    import napari

    viewer = napari.Viewer(title=window_title(project), show=show)
    docked = {}
    for k, name in enumerate(WIDGETS):
        dock, widget = viewer.window.add_plugin_dock_widget("napari-paraspinal", name,
                                                            tabify=k > 0)
        docked[name] = widget
        if k == 0:
            first = dock
    from qtpy.QtCore import QTimer

    # the tab shown first is Segment, not the last one docked (raised once the docks are laid
    # out: raising earlier is undone by the tabifying)
    QTimer.singleShot(0, first.raise_)
    _add_about(viewer)
    if project:
        docked["Project and fine-tune"].open_project(project)
    if files:
        viewer.open(list(files), plugin="napari-paraspinal")
    if sample:
        key = "phantom_l4l5" if sample == "L4-L5" else "phantom_l5s1"
        viewer.open_sample("napari-paraspinal", key)
    return viewer


def _add_about(viewer) -> None:  # noqa: ANN001  napari.Viewer
    """Help › About napari-paraspinal: :func:`about_text` in a message box."""
    from qtpy.QtWidgets import QMessageBox

    window = viewer.window._qt_window
    action = viewer.window.help_menu.addAction(f"About {TITLE}")
    action.triggered.connect(lambda: QMessageBox.about(window, f"About {TITLE}", about_text()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-app`` GUI script."""
    import sys

    if sys.stdout is None:  # a windowed (frozen) app has no console; keep prints harmless
        import os

        sys.stdout = sys.stderr = open(os.devnull, "w", encoding="utf-8")
    args = build_parser().parse_args(argv)
    if args.self_test:
        from paraspinal_app.self_test import run_self_test

        return run_self_test(lambda line: print(line, flush=True))
    try:
        import napari
    except ImportError:
        print("paraspinal-app: napari is not installed; install the GUI with "
              "pip install 'napari-paraspinal[gui]'", file=sys.stderr)
        return 2

    open_viewer(args.files, args.sample, args.project)
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
