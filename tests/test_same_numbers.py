"""One case, the same numbers whichever path measures it: ``paraspinal run`` and a project
(``project segment`` then ``export``) give equal areas, fat %, level and QC flags (on a real
stack with a slice the QC flags, ``_helpers_real``)."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
import pytest
from _helpers_real import FLAGGED, PASSED, upside_down

from napari_paraspinal.cli import main
from napari_paraspinal.provenance import COLUMNS
from napari_paraspinal.realdata import default_real_data_dir

REAL = default_real_data_dir() / "lpm_tum01" / "water.nii.gz"
SHARED = ("level", "registration_flagged", "registration_check", "plausibility_check")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _compare(run_row: dict, project_row: dict) -> int:
    """Assert the measured columns agree; returns how many were compared."""
    numeric = [c for c in run_row if c.endswith(("_mm2", "_pct")) and c in project_row]
    for column in numeric:
        a, b = run_row[column], project_row[column]
        if a == "" or b == "":
            assert a == b, (column, a, b)
        else:
            assert float(b) == pytest.approx(float(a), abs=0.01), (column, a, b)
    for column in SHARED:
        if column in run_row or column in project_row:
            assert run_row.get(column, "") == project_row.get(column, ""), column
    return len(numeric)


def _both(inputs: list[str], tmp_path: Path, extra: list[str]) -> tuple[list[dict], list[dict]]:
    assert main(["run", *inputs, "--out", str(tmp_path / "run"), *extra]) == 0
    proj = str(tmp_path / "proj")
    assert main(["project", "init", proj]) == 0
    assert main(["project", "add", proj, *inputs, *extra]) == 0
    assert main(["project", "segment", proj]) == 0
    assert main(["export", proj, "--out", str(tmp_path / "export.xlsx")]) == 0
    return (_rows(tmp_path / "run" / "measurements.csv"), _rows(tmp_path / "export.csv"))


def test_phantom_slices_measure_the_same_via_run_and_project(tmp_path: Path) -> None:
    assert main(["phantom", str(tmp_path / "data"), "--n", "2", "--seed", "4711"]) == 0
    run_rows, project_rows = _both([str(tmp_path / "data" / "images")], tmp_path, [])
    by_case = {r["case"]: r for r in project_rows}
    assert len(run_rows) == len(by_case) == 2
    for row in run_rows:
        assert _compare(row, by_case[row["case"]]) > 20
    # one provenance schema: the same first columns, and the same method on both paths
    sheets = [openpyxl.load_workbook(path, read_only=True)["provenance"]
              for path in (tmp_path / "run" / "measurements.xlsx", tmp_path / "export.xlsx")]
    tables = [list(sheet.iter_rows(values_only=True)) for sheet in sheets]
    for table in tables:
        assert table[0][:len(COLUMNS)] == COLUMNS
    run_prov, project_prov = ({r[0]: dict(zip(t[0], r, strict=True)) for r in t[1:]}
                              for t in tables)
    assert run_prov.keys() == project_prov.keys()
    for case, row in run_prov.items():
        other = project_prov[case]
        for column in ("software", "bias_correction", "model_weights_sha256"):
            assert row[column] == other[column] != "", (case, column)
        assert row["label_status"] == other["label_status"] == "automatic"


@pytest.mark.skipif(not REAL.is_file(), reason=f"real Dixon case not found at {REAL}")
def test_a_real_stack_measures_the_same_via_run_and_project(tmp_path: Path) -> None:
    stack = upside_down(REAL, tmp_path / "input" / "water.nii.gz")
    run_rows, project_rows = _both([str(stack)], tmp_path, ["--slices", f"{PASSED},{FLAGGED}"])
    by_slice = {r["case"].rsplit("_s", 1)[1].lstrip("0") or "0": r for r in project_rows}
    assert sorted(by_slice) == ["14", "4"]
    flagged = 0
    for row in run_rows:
        other = by_slice[row["slice"]]
        assert _compare(row, other) > 20
        flagged += row["registration_flagged"] in ("True", "1", "true")
    assert flagged >= 1  # the flagged slice keeps its flag on both paths
