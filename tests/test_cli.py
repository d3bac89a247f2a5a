"""The ``paraspinal`` command as a user runs it: phantoms in, a real spreadsheet out."""

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
from openpyxl import load_workbook
from PIL import Image

from napari_paraspinal.cli import main


def paraspinal(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_paraspinal", *args],
                          capture_output=True, text=True)


def test_help_lists_the_subcommands() -> None:
    out = paraspinal("--help")
    assert out.returncode == 0
    for command in ("run", "phantom", "info"):
        assert command in out.stdout


def test_phantom_then_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert main(["phantom", str(data), "--n", "3", "--seed", "500", "--level", "both"]) == 0
    images = sorted((data / "images").glob("*.nii.gz"))
    assert len(images) == 3
    assert len(list((data / "labels").glob("*.nii.gz"))) == 3
    assert len(list((data / "truth").glob("*.json"))) == 3

    # one broken file among good ones: reported, and the others still run
    broken = data / "images" / "broken.nii.gz"
    broken.write_bytes(images[0].read_bytes()[:200])
    out = tmp_path / "out"
    result = paraspinal("run", str(data / "images"), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert "broken" in result.stdout and "failed" in result.stdout

    rows = list(csv.DictReader((out / "measurements.csv").open()))
    assert [r["case"] for r in rows] == sorted(r["case"] for r in rows)
    status = {r["case"]: r["status"] for r in rows}
    assert status.pop("broken") == "failed"
    assert set(status.values()) == {"read"}

    wb = load_workbook(out / "measurements.xlsx")
    assert wb.sheetnames == ["measurements", "provenance"]
    ws = wb["measurements"]
    header = [c.value for c in ws[1]]
    spacing = [row[header.index("spacing_col_mm")] for row in ws.iter_rows(min_row=2,
                                                                           values_only=True)]
    assert all(isinstance(v, float) and 0.5 <= v <= 1.2 for v in spacing if v is not None)

    pngs = sorted((out / "overlays").glob("*.png"))
    assert len(pngs) == 3
    assert np.asarray(Image.open(pngs[0])).ndim == 3


def test_all_inputs_bad_exits_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "empty.nii.gz"
    bad.write_bytes(b"")
    result = paraspinal("run", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "empty.nii.gz" in result.stdout


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    result = paraspinal("run", str(tmp_path / "nope.nii.gz"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "nope.nii.gz" in result.stderr and "Traceback" not in result.stderr
