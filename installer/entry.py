"""Entry point of the frozen bundle: ``paraspinal`` (the command line) when started under
that name, else ``paraspinal-app`` (the desktop app). On Linux and macOS ``paraspinal`` is a
link to ``paraspinal-app`` (one executable, one copy of the Python archive); on Windows they
are two executables, the app's without a console window."""

import multiprocessing
import os
import sys


def main() -> int:
    sys.dont_write_bytecode = True  # the bundle's few source files: no __pycache__ beside
    multiprocessing.freeze_support()  # worker processes of training re-enter here
    name = os.path.basename(sys.argv[0]).lower().removesuffix(".exe")
    if name == "paraspinal":
        from napari_paraspinal.cli import main as run
    else:
        from paraspinal_app.main import main as run
    return run()


if __name__ == "__main__":
    sys.exit(main())
