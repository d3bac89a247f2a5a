"""`paraspinal-app --self-test`, from the source tree and in the PyInstaller bundle.

The bundle test builds installer/paraspinal.spec (about 5 minutes and 1.3 GB on a 2-core
machine) and runs the bundle's self-test under Xvfb with nothing of this environment: it is
marked slow and runs only with PARASPINAL_INSTALLER_TEST=1 (`make test` runs every test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAME = "napari-paraspinal"


def test_self_test_reports_each_failure_and_exits_1(monkeypatch) -> None:
    from paraspinal_app import self_test

    def broken(work: Path) -> str:
        raise self_test.CheckFailed("no model")

    monkeypatch.setattr(self_test, "check_demo", broken)
    lines: list[str] = []
    assert self_test.run_self_test(lines.append, window=False) == 1
    assert lines[0].startswith("ok   installation: napari-paraspinal")
    assert lines[1:] == ["FAIL demo run: no model",
                         "FAIL spreadsheet: not checked (the demo run failed)",
                         "FAIL label maps: not checked (the demo run failed)",
                         "FAIL child job: not checked (the demo run failed)",
                         "self-test FAILED: demo run, spreadsheet, label maps, child job"]


def test_self_test_option_is_in_the_help() -> None:
    from paraspinal_app.main import build_parser

    assert build_parser().parse_args(["--self-test"]).self_test
    assert "--self-test" in build_parser().format_help()


@pytest.mark.gui
@pytest.mark.skipif(not os.environ.get("DISPLAY"),
                    reason="the main window needs a display: run under xvfb-run")
def test_self_test_from_the_source_tree(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-m", "paraspinal_app.main", "--self-test"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("installation", "demo run", "spreadsheet", "label maps", "child job",
                  "main window"):
        assert any(line.startswith(f"ok   {check}: ") for line in lines), done.stdout
    assert lines[-1] == "self-test passed"


def _bare_env() -> dict[str, str]:
    """What a machine with nothing but the bundle offers: no venv, no PYTHONPATH."""
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"),
           "LANG": "C.UTF-8"}
    if os.environ.get("DISPLAY") and not shutil.which("xvfb-run"):
        env["DISPLAY"] = os.environ["DISPLAY"]
    return env


@pytest.mark.slow
@pytest.mark.gui
@pytest.mark.skipif(os.environ.get("PARASPINAL_INSTALLER_TEST") != "1",
                    reason="builds the bundle (minutes, 1.3 GB): set PARASPINAL_INSTALLER_TEST=1")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux bundle")
def test_bundle_builds_and_passes_its_self_test(tmp_path) -> None:
    pytest.importorskip("PyInstaller", reason="PyInstaller is not installed: "
                                              "pip install pyinstaller")
    xvfb = shutil.which("xvfb-run")
    if not xvfb and not os.environ.get("DISPLAY"):
        pytest.skip("the app's self-test needs a display: install xvfb-run")
    out = Path(os.environ.get("PARASPINAL_INSTALLER_OUT", REPO / "build" / "installer"))
    subprocess.run(["nice", "-n", "10", sys.executable, str(REPO / "installer" / "build.py"),
                    "--out", str(out)], check=True, timeout=3600)
    bundle = out / "dist" / NAME
    app, cli = bundle / "paraspinal-app", bundle / "paraspinal"
    assert app.is_file() and cli.exists()
    env = _bare_env()

    cmd = [str(app), "--self-test"]
    done = subprocess.run([xvfb, "-a", *cmd] if xvfb else cmd, cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"(bundle: {bundle.resolve() / '_internal'})" in done.stdout  # not this venv
    # the long job ran in a child that is the bundle's own executable
    assert "child job: 2 cases segmented in a child process (paraspinal-app)" in done.stdout
    assert done.stdout.splitlines()[-1] == "self-test passed"

    def cli_run(*args: str) -> str:
        done = subprocess.run([str(cli), *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert cli_run("--version").startswith("paraspinal ")
    cli_run("phantom", "data", "--n", "2", "--seed", "900000", "--level", "both")
    assert "2 of 2 cases done" in cli_run("run", "data/images", "--out", "out", "--quiet")
    assert (tmp_path / "out" / "measurements.xlsx").is_file()
