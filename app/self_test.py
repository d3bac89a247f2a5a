"""``paraspinal-app --self-test``: is this installation whole?

Runs the README's demo (four phantom slices, then the main job on them, through the same
command-line core as ``make demo``) in a temporary folder, checks that the spreadsheet and
label maps were written with the demo's numbers in them, runs a long job in a child process
as the app does, then opens the app's main window
(:func:`paraspinal_app.window.open_viewer`), lets Qt lay it out and closes it. One line per
check; exit status 0 only when every check passed. It is what an installer (a frozen bundle
or a pip install) is checked with: nothing but the installation is needed.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: The demo of ``make demo``: four phantom slices, both levels.
DEMO_PHANTOMS = ["--n", "4", "--seed", "900000", "--level", "both"]
#: Columns that must hold a positive number in every row of the demo's table.
DEMO_COLUMNS = ("MF_L_csa_mm2", "MF_R_csa_mm2", "ES_L_csa_mm2", "ES_R_csa_mm2",
                "PS_L_csa_mm2", "PS_R_csa_mm2")


class CheckFailed(Exception):
    """A check's reason for failing (the message is printed)."""


def _cli(args: list[str]) -> str:
    """``paraspinal ARGS`` in this process; its output, or :class:`CheckFailed` with it."""
    from napari_paraspinal.cli import main as cli_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = cli_main(args)
        except SystemExit as stop:  # argparse
            status = stop.code
    if status != 0:
        tail = " | ".join(out.getvalue().strip().splitlines()[-3:])
        raise CheckFailed(f"paraspinal {args[0]} exited with {status}: {tail}")
    return out.getvalue()


def check_installation() -> str:
    """Where the core was loaded from (a frozen bundle's folder, or a Python environment),
    and that the shipped model is there."""
    import napari_paraspinal
    from napari_paraspinal.segment import default_model_path

    model = default_model_path()
    if not (model / "weights.safetensors").is_file():
        raise CheckFailed(f"no shipped model at {model}")
    where = getattr(sys, "_MEIPASS", None)
    kind = "bundle" if where else "Python"
    where = where or str(Path(napari_paraspinal.__file__).parent)
    return (f"napari-paraspinal {napari_paraspinal.__version__} ({kind}: {where}), "
            f"model {model.name}")


def check_demo(work: Path) -> str:
    """Phantoms, then ``paraspinal run`` on them, as ``make demo`` does."""
    data, out = work / "demo-data", work / "demo-output"
    _cli(["phantom", str(data), *DEMO_PHANTOMS])
    _cli(["run", str(data / "images"), "--out", str(out), "--quiet"])
    return f"4 phantom slices segmented into {out}"


def check_spreadsheet(work: Path) -> str:
    """The table in .xlsx and .csv, a segmented row per slice with positive areas."""
    out = work / "demo-output"
    xlsx, table = out / "measurements.xlsx", out / "measurements.csv"
    for path in (xlsx, table):
        if not path.is_file() or path.stat().st_size == 0:
            raise CheckFailed(f"{path.name} was not written")
    with table.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != 4:
        raise CheckFailed(f"{table.name} has {len(rows)} rows, not 4")
    for row in rows:
        if row.get("status") != "segmented":
            raise CheckFailed(f"{row.get('case')}: status {row.get('status')!r}, "
                              f"not 'segmented' ({row.get('notes', '')})")
        for col in DEMO_COLUMNS:
            try:
                value = float(row.get(col) or "nan")
            except ValueError:
                value = float("nan")
            if not value > 0:
                raise CheckFailed(f"{row['case']}: {col} is {row.get(col)!r}")
    from openpyxl import load_workbook

    book = load_workbook(xlsx, read_only=True)
    try:
        sheet = book.worksheets[0]
        filled = sum(1 for r in sheet.iter_rows(min_row=2, values_only=True)
                     if any(v not in (None, "") for v in r))
    finally:
        book.close()
    if filled < 4:
        raise CheckFailed(f"{xlsx.name}'s first sheet has {filled} filled rows, not 4")
    model = rows[0].get("label_source", "?")
    mf = float(rows[0]["MF_L_csa_mm2"])
    return f"4 rows ({model}; {rows[0]['case']} MF left {mf:.0f} mm²)"


def check_labels(work: Path) -> str:
    """A NIfTI label map per slice, with the muscles' labels in it."""
    import numpy as np
    import SimpleITK as sitk

    maps = sorted((work / "demo-output" / "labels").glob("*.nii.gz"))
    if len(maps) != 4:
        raise CheckFailed(f"{len(maps)} label maps in demo-output/labels, not 4")
    counts = []
    for path in maps:
        labels = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
        labels = labels[labels > 0]
        if labels.size < 6:  # MF, ES, PS on each side at least
            raise CheckFailed(f"{path.name} holds labels {labels.tolist()}")
        counts.append(labels.size)
    return f"4 label maps ({min(counts)}–{max(counts)} labels each)"


def check_child_job(work: Path) -> str:
    """A long job in a child process, as the app runs its batch segmentation and
    fine-tuning (in a bundle the child is the bundle's own executable): two demo slices
    segmented as a project batch."""
    from napari_paraspinal._napari.project_jobs import run_batch
    from napari_paraspinal.job_process import child_command, iterate_in_process
    from napari_paraspinal.project.store import Project

    command = child_command()
    if command is None:
        raise CheckFailed("no child process can be started here")
    images = sorted((work / "demo-data" / "images").glob("*.nii.gz"))[:2]
    project = Project.init(work / "child-job-project")
    try:
        project.add(images)
    finally:
        project.close()
    events = iterate_in_process(run_batch, work / "child-job-project")
    while True:
        try:
            next(events)
        except StopIteration as done:
            result = done.value
            break
    if len(result.segmented) != len(images) or result.failed:
        raise CheckFailed(f"the child segmented {len(result.segmented)} of {len(images)} "
                          f"cases ({result.failed or 'no failure named'})")
    return f"{len(images)} cases segmented in a child process ({Path(command[0]).name})"


def check_window() -> str:
    """The app's main window with every dock widget, shown, laid out and closed (with
    settings in a temporary file: the user's are neither read nor changed)."""
    from paraspinal_app.settings import SettingsStore
    from paraspinal_app.window import TITLE, WIDGETS, open_viewer
    from qtpy.QtWidgets import QApplication

    with tempfile.TemporaryDirectory(prefix="paraspinal-self-test-settings-") as tmp:
        viewer = open_viewer(show=True, store=SettingsStore(Path(tmp) / "settings.json"))
        app = QApplication.instance()
        try:
            for _ in range(20):
                app.processEvents()
                time.sleep(0.02)
            window = viewer.window._qt_window
            if not window.isVisible():
                raise CheckFailed("the main window did not show")
            if window.windowTitle() != TITLE:
                raise CheckFailed(f"window title {window.windowTitle()!r}")
            missing = [w for w in WIDGETS
                       if f"{w} (napari-paraspinal)" not in viewer.window.dock_widgets]
            if missing:
                raise CheckFailed(f"dock widgets missing: {', '.join(missing)}")
        finally:
            viewer.close()
        app.processEvents()
    return f"opened and closed ({len(WIDGETS)} dock widgets)"


def run_self_test(print_line: Callable[[str], None] = print, window: bool = True) -> int:
    """Every check, one line each ("ok   NAME: ..." or "FAIL NAME: reason"), then a summary
    line; 0 when all passed, else 1. ``window=False`` leaves out the main window."""
    failed: list[str] = []

    def attempt(name: str, check: Callable[[], str]) -> bool:
        start = time.perf_counter()
        try:
            detail = check()
        except Exception as err:  # noqa: BLE001  a self-test reports, it does not raise
            reason = str(err) if isinstance(err, CheckFailed) else f"{type(err).__name__}: {err}"
            print_line(f"FAIL {name}: {reason}")
            failed.append(name)
            return False
        print_line(f"ok   {name}: {detail} ({time.perf_counter() - start:.1f} s)")
        return True

    attempt("installation", check_installation)
    with tempfile.TemporaryDirectory(prefix="paraspinal-self-test-") as tmp:
        work = Path(tmp)
        if attempt("demo run", lambda: check_demo(work)):
            attempt("spreadsheet", lambda: check_spreadsheet(work))
            attempt("label maps", lambda: check_labels(work))
            attempt("child job", lambda: check_child_job(work))
        else:
            for name in ("spreadsheet", "label maps", "child job"):
                print_line(f"FAIL {name}: not checked (the demo run failed)")
                failed.append(name)
    if window:
        attempt("main window", check_window)
    print_line("self-test passed" if not failed
               else f"self-test FAILED: {', '.join(failed)}")
    return 0 if not failed else 1
