"""``paraspinal-app``: the standalone desktop application.

Without arguments it shows the start screen (:mod:`.start_screen`) at once, before napari is
imported, and builds the main window (:mod:`.window`) once the user chose a project, files or
the sample. With files, ``--project`` or ``--sample`` it opens the main window directly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .about import LICENCE, TITLE, about_text

__all__ = ["LICENCE", "TITLE", "about_text", "build_parser", "main"]
#: Names of :mod:`.window`, imported only when asked for: that module needs Qt, and this one
#: must import where no GUI package is installed (to say what to install).
_WINDOW_NAMES = ("WIDGETS", "open_viewer", "window_title")
NO_NAPARI = ("paraspinal-app: napari is not installed; install the GUI with "
             "pip install 'napari-paraspinal[gui]'")


class VersionAction(argparse.Action):
    """``--version``: :func:`about_text`, computed only when asked (it loads torch)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version, the shipped model and the licence, and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(about_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paraspinal-app",
                                     description="Open lumbar MRI slices for segmentation.",
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("files", nargs="*", help="DICOM, NIfTI, NRRD or MHA files or folders")
    parser.add_argument("--sample", choices=["L4-L5", "L5-S1"], default=None,
                        help="open a phantom slice of this level")
    parser.add_argument("--project", default=None,
                        help="project folder to open in the Project widget (created if new)")
    parser.add_argument("--no-start-screen", action="store_true",
                        help="open the main window at once, without the start screen")
    parser.add_argument("--self-test", action="store_true",
                        help="run the demo headless in a temporary folder, check its "
                             "spreadsheet and label maps,\nopen and close the main window; "
                             "exit 0 when all passed")
    return parser


def __getattr__(name: str) -> object:
    if name in _WINDOW_NAMES:
        from . import window

        return getattr(window, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def gui_installed() -> bool:
    """Whether Qt (qtpy) and napari can be imported, found without importing napari."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in ("qtpy", "napari"))
    except (ImportError, ValueError):
        return False


def wants_start_screen(args: argparse.Namespace) -> bool:
    """The start screen unless files, a project or a sample were given (or it was refused)."""
    return not (args.files or args.project or args.sample or args.no_start_screen)


def start_screen() -> int:
    """The start screen; the main window once something was chosen. Qt's exit status."""
    from qtpy.QtWidgets import QApplication, QMessageBox

    from .settings import SettingsStore
    from .start_screen import Launch, StartScreen
    from .window import open_viewer

    app = QApplication.instance() or QApplication(sys.argv)
    store = SettingsStore()
    screen = StartScreen(store)

    def launch(choice: Launch) -> None:
        QApplication.processEvents()  # show "opening…" before napari's import
        try:
            import napari  # noqa: F401
        except ImportError:
            QMessageBox.critical(screen, TITLE, NO_NAPARI)
            screen.close()
            return
        try:
            viewer = open_viewer(choice.files, choice.sample, choice.project, store=store)
        except Exception as err:  # noqa: BLE001  say why and offer the choices again
            screen.reset(f"could not open the main window: {type(err).__name__}: {err}")
            return
        screen.viewer = viewer  # kept alive with the screen until it closes
        screen.close()

    screen.chosen.connect(launch)
    screen.show()
    return app.exec()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal-app`` GUI script."""
    if sys.stdout is None:  # a windowed (frozen) app has no console; keep prints harmless
        import os

        sys.stdout = sys.stderr = open(os.devnull, "w", encoding="utf-8")
    args = build_parser().parse_args(argv)
    if args.self_test:
        from .self_test import run_self_test

        return run_self_test(lambda line: print(line, flush=True))
    if not gui_installed():
        print(NO_NAPARI, file=sys.stderr)
        return 2
    if wants_start_screen(args):
        return start_screen()
    try:
        import napari
    except ImportError:
        print(NO_NAPARI, file=sys.stderr)
        return 2
    from .window import open_viewer

    open_viewer(args.files, args.sample, args.project)
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
