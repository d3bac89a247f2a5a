"""The exported XLSX opens in a real spreadsheet (LibreOffice) and shows the values we wrote
(that they are numeric cells, not text, is checked with openpyxl in test_cli)."""

import csv
import shutil
import subprocess
from pathlib import Path

import pytest

from napari_paraspinal.cli import main

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice is not installed (.ci/run installs "
                                            "libreoffice-calc-nogui)")
def test_libreoffice_reads_the_measurements(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    main(["phantom", str(data), "--n", "2", "--seed", "800"])
    main(["run", str(data / "images"), "--labels", str(data / "labels"), "--out", str(out),
          "--quiet"])
    converted = tmp_path / "converted"
    subprocess.run([SOFFICE, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "csv", "--outdir", str(converted),
                    str(out / "measurements.xlsx")], check=True, capture_output=True,
                   timeout=120)
    from_office = list(csv.DictReader((converted / "measurements.csv").open()))
    ours = list(csv.DictReader((out / "measurements.csv").open()))
    assert [r["case"] for r in from_office] == [r["case"] for r in ours]
    for a, b in zip(from_office, ours, strict=True):
        for key in ("MF_L_csa_mm2", "ES_R_fat_pct", "spacing_col_mm", "rows"):
            # the values a spreadsheet user sees are the numbers we wrote
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-6), key
