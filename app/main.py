"""``paraspinal-app``: the standalone desktop application.

It opens napari with the paraspinal plugin's readers, sample data and every dock widget
(Segment first; the others tabbed beside it), and optionally a project, so annotators get the
same core and widgets as the plugin in a window of their own.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paraspinal-app",
                                     description="Open lumbar MRI slices for segmentation.")
    parser.add_argument("files", nargs="*", help="DICOM, NIfTI, NRRD or MHA files or folders")
    parser.add_argument("--sample", choices=["L4-L5", "L5-S1"], default=None,
                        help="open a phantom slice of this level")
    parser.add_argument("--project", default=None,
                        help="project folder to open in the Project widget (created if new)")
    return parser


#: The plugin's dock widgets, in the order the app shows them.
WIDGETS = ("Segment", "Fat and areas", "Export", "Labels legend", "Project and fine-tune")


def open_viewer(files: Sequence[str] = (), sample: str | None = None,
                project: str | None = None, show: bool = True):  # noqa: ANN201
    """A napari viewer with the plugin's widgets docked and the given files (and optionally a
    phantom, and a project) opened."""
    import napari

    viewer = napari.Viewer(title="napari-paraspinal", show=show)
    docked = {}
    for k, name in enumerate(WIDGETS):
        _, widget = viewer.window.add_plugin_dock_widget("napari-paraspinal", name,
                                                         tabify=k > 0)
        docked[name] = widget
    if project:
        docked["Project and fine-tune"].open_project(project)
    if files:
        viewer.open(list(files), plugin="napari-paraspinal")
    if sample:
        key = "phantom_l4l5" if sample == "L4-L5" else "phantom_l5s1"
        viewer.open_sample("napari-paraspinal", key)
    return viewer


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-app`` GUI script."""
    args = build_parser().parse_args(argv)
    try:
        import napari
    except ImportError:
        import sys

        print("paraspinal-app: napari is not installed; install the GUI with "
              "pip install 'napari-paraspinal[gui]'", file=sys.stderr)
        return 2

    open_viewer(args.files, args.sample, args.project)
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
