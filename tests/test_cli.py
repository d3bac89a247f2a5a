"""The ``paraspinal`` command as a user runs it: phantoms in, a real spreadsheet out."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from napari_paraspinal.models import MODELS_DIR
from openpyxl import load_workbook
from PIL import Image

from napari_paraspinal.cli import main
from napari_paraspinal.core.config import config_to_dict
from napari_paraspinal.fat_options import METHODS
from napari_paraspinal.preprocess.n4 import N4Config
from napari_paraspinal.preprocess.registration_config import RegistrationConfig


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
    # the paper's model: its card predates settings added since, which provenance must show
    paper = MODELS_DIR / "paraspinal-phantom-t2w"
    result = paraspinal("run", str(data / "images"), "--out", str(out), "--quiet",
                        "--model", str(paper))
    assert result.returncode == 1, result.stderr  # one case failed: the others still ran
    assert "broken" in result.stdout and "failed" in result.stdout

    rows = list(csv.DictReader((out / "measurements.csv").open()))
    assert [r["case"] for r in rows] == sorted(r["case"] for r in rows)
    status = {r["case"]: r["status"] for r in rows}
    assert status.pop("broken") == "failed"
    assert set(status.values()) == {"segmented"}  # by the model

    wb = load_workbook(out / "measurements.xlsx")
    assert wb.sheetnames == ["measurements", "provenance"]
    # provenance gives the settings actually run: the card's N4 and normalisation, and this
    # version's registration (the card keeps the registration that training used)
    prov = list(wb["provenance"].iter_rows(values_only=True))
    segmented = [dict(zip(prov[0], row, strict=True)) for row in prov[1:]]
    segmented = [row for row in segmented if row["preprocessing"]]
    assert len(segmented) == 3
    run_settings = json.loads(segmented[0]["preprocessing"])
    card = json.loads((paper / "card.json").read_text())
    assert card["preprocessing"]["registration"]["shrink"] != list(RegistrationConfig().shrink)
    default = json.loads(json.dumps(config_to_dict(RegistrationConfig())))
    assert run_settings["registration"] == default
    assert run_settings["normalize"] == card["preprocessing"]["normalize"]
    # the card predates N4's fit_pixel_mm: it runs at the default
    assert run_settings["n4"] == {**card["preprocessing"]["n4"],
                                  "fit_pixel_mm": N4Config().fit_pixel_mm}
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


def test_run_measures_given_label_maps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    main(["phantom", str(data), "--n", "2", "--seed", "700"])
    out = tmp_path / "out"
    assert main(["run", str(data / "images"), "--labels", str(data / "labels"),
                 "--out", str(out), "--quiet"]) == 0
    wb = load_workbook(out / "measurements.xlsx")
    ws = wb["measurements"]
    header = [c.value for c in ws[1]]
    for values in ws.iter_rows(min_row=2, values_only=True):
        row = dict(zip(header, values, strict=True))
        truth = json.loads((data / "truth" / f"{row['case']}.json").read_text())
        for short in ("SP", "DI", "PS_L", "PS_R", "MF_L", "MF_R", "ES_L", "ES_R"):
            assert isinstance(row[f"{short}_csa_mm2"], float)
            assert row[f"{short}_csa_mm2"] == pytest.approx(
                truth["structures"][short]["csa_mm2"], abs=1e-3)
        assert (out / "labels" / f"{row['case']}.nii.gz").exists()
    # a missing label map is a failed case naming the file, not a crash
    (data / "labels" / sorted((data / "labels").iterdir())[0].name).unlink()
    main(["run", str(data / "images"), "--labels", str(data / "labels"), "--out",
          str(tmp_path / "out2"), "--quiet"])
    rows = list(csv.DictReader((tmp_path / "out2" / "measurements.csv").open()))
    assert sorted(r["status"] for r in rows) == ["failed", "read"]


def test_bench_fat_prints_the_three_methods() -> None:
    result = paraspinal("bench", "fat", "--n", "2")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == list(METHODS)
    assert "peak RSS" in result.stdout


def test_bench_preprocess_prints_both_sizes() -> None:
    result = paraspinal("bench", "preprocess", "--n", "1")
    assert result.returncode == 0, result.stderr
    rows = [tuple(c.strip() for c in line.split("|")[1:3])
            for line in result.stdout.splitlines() if line.startswith("| ") and "²" in line]
    assert rows == [("256²", "given"), ("512²", "given"), ("256²", "auto"), ("512²", "auto")]
    assert "register_ms" in result.stdout and "peak RSS" in result.stdout


def test_patient_identifiers_only_when_asked(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    dicom = Path(get_testdata_file("MR_small.dcm"))
    name = str(dcmread(dicom).PatientName)
    assert name  # the bundled file carries a patient name to hide
    for flag, out in (([], tmp_path / "plain"), (["--identifiers"], tmp_path / "ids")):
        assert main(["run", str(dicom), "--out", str(out), "--no-overlays", "--quiet",
                     *flag]) == 0
    plain = b"".join(p.read_bytes() for p in (tmp_path / "plain").rglob("*") if p.is_file())
    assert name.encode() not in plain
    wb = load_workbook(tmp_path / "plain" / "measurements.xlsx")
    cells = [str(c) for row in wb["provenance"].iter_rows(values_only=True) for c in row]
    assert name not in cells and "patient_name" not in cells
    wb = load_workbook(tmp_path / "ids" / "measurements.xlsx")
    prov = list(wb["provenance"].iter_rows(values_only=True))
    assert dict(zip(prov[0], prov[1], strict=True))["patient_name"] == name
    # a 20 mm head slice holds no lumbar muscle: flagged with the reasons, no crash
    row = next(csv.DictReader((tmp_path / "ids" / "measurements.csv").open()))
    assert row["registration_flagged"] == "True"
    check = row["registration_check"]
    assert "MF_L not found" in check and "ES_R not found" in check, check
