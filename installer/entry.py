"""Entry point of the frozen bundle: ``paraspinal`` (the command line) when started under
that name, else ``paraspinal-app`` (the desktop app). On Linux and macOS ``paraspinal`` is a
link to ``paraspinal-app`` (one executable, one copy of the Python archive); on Windows they
are two executables, the app's without a console window. Started with
``--paraspinal-job-child`` it is the child process of one of the app's long jobs
(``napari_paraspinal.job_process``)."""

import multiprocessing
import os
import sys


def main() -> int:
    sys.dont_write_bytecode = True  # the bundle's few source files: no __pycache__ beside
    multiprocessing.freeze_support()  # worker processes of training re-enter here
    if sys.argv[1:2] == ["--paraspinal-job-child"]:  # job_process.FROZEN_CHILD_ARG
        from napari_paraspinal.job_process import run_child

        run_child()  # a long job of the app, off its GUI process
        return 0
    name = os.path.basename(sys.argv[0]).lower().removesuffix(".exe")
    if name == "paraspinal":
        from napari_paraspinal.cli import main as run
    else:
        from paraspinal_app.main import main as run
    return run()


if __name__ == "__main__":
    sys.exit(main())
