"""Attacks on ``paraspinal run`` with real files, and what each now gets.

- formula injection: a file (or DICOM patient field) named like a spreadsheet formula
  stays text in the XLSX (string cells, never formulas); CSV text is made inert;
- impossible areas: a 9.9 mm spacing header, ``--spacing 8`` typed for 0.8, or a spacing
  that inflates every area, flags the row with the reason;
- outlier pixels: one pixel of -32768 (int16) or -1e30 (float) no longer fails the slice;
- non-axial planes: a sagittal or strongly oblique slice is flagged, not only noted.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from openpyxl import load_workbook
from PIL import Image
from pydicom.data import get_testdata_file

from napari_paraspinal.cli import main
from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.core.orientation import not_axial_reason, plane_tilt_deg
from napari_paraspinal.core.writers import write_image, write_labels
from napari_paraspinal.export import write_csv, write_xlsx
from napari_paraspinal.plausibility import (
    AREA_MM2,
    add_reasons,
    area_reasons,
    check_row,
    label_areas,
)
from napari_paraspinal.preprocess import NormalizeConfig, body_mask, normalize
from napari_paraspinal.segment import default_model_path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FORMULA = '=HYPERLINK("http:evil.example","click")'
needs_model = pytest.mark.skipif(not default_model_path().is_dir(),
                                 reason="the shipped segmentation model is not installed")


@pytest.fixture(scope="module")
def case(phantom):
    return phantom(3, level='L4-L5')


def run(*args: str | Path) -> int:
    return main(["run", *(str(a) for a in args), "--no-overlays", "--quiet"])


def csv_rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "measurements.csv").open(encoding="utf-8")))


def sheet(out: Path, name: str) -> tuple[list, list]:
    ws = load_workbook(out / "measurements.xlsx")[name]
    rows = list(ws.iter_rows())
    return [c.value for c in rows[0]], rows[1:]


def with_geometry(image: SliceImage, **changes) -> SliceImage:
    g = image.geometry
    fields = {"shape": g.shape, "spacing": g.spacing, "origin": g.origin,
              "direction": g.direction, **changes}
    return image.with_data(image.data, geometry=Geometry(**fields))


def rotation(axis: str, degrees: float) -> tuple[float, ...]:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    m = {"x": [[1, 0, 0], [0, c, -s], [0, s, c]],
         "y": [[c, 0, s], [0, 1, 0], [-s, 0, c]]}[axis]
    return tuple(np.asarray(m, float).ravel())


# ------------------------------------------------------------- 3. formula injection


def test_formula_names_stay_text_in_the_xlsx(tmp_path: Path, monkeypatch) -> None:
    """A DICOM file named like a formula, run by its bare name, with formula patient fields
    and a broken file whose error message starts with ``=``: every such cell is a string
    cell holding the exact text, no cell anywhere is a formula, numbers stay numbers."""
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.PatientName = "@SUM(1+1)*cmd|' /C calc'!A0"
    ds.PatientID = "+1+2"
    ds.save_as(tmp_path / FORMULA)
    (tmp_path / "=1+2.nii.gz").write_bytes(b"")  # empty: a failed case, message "=1+2..."
    monkeypatch.chdir(tmp_path)
    run(FORMULA, "=1+2.nii.gz", "--out", "out", "--identifiers")

    header, rows = sheet(tmp_path / "out", "provenance")
    by_source = {r[header.index("source")].value: dict(zip(header, r, strict=True))
                 for r in rows}
    assert FORMULA in by_source, list(by_source)
    source = by_source[FORMULA]["source"]
    assert source.data_type == "s" and source.value == FORMULA and source.quotePrefix
    for column, text in (("patient_name", str(ds.PatientName)), ("patient_id", "+1+2")):
        cell = by_source[FORMULA][column]
        assert cell.data_type == "s" and cell.value == text, (column, cell.value)
    message = by_source["=1+2.nii.gz"]["message"]
    assert message.value.startswith("=1+2.nii.gz") and message.data_type == "s"
    for name in ("provenance", "measurements"):
        _, body = sheet(tmp_path / "out", name)
        assert not [c.coordinate for r in body for c in r if c.data_type == "f"], name
    hdr, measured = sheet(tmp_path / "out", "measurements")
    spacing = [r[hdr.index("spacing_col_mm")] for r in measured
               if r[hdr.index("spacing_col_mm")].value is not None]
    assert spacing and all(c.data_type == "n" and c.value == pytest.approx(0.3125)
                           for c in spacing)
    for row in csv_rows(tmp_path / "out"):  # the CSV: no text cell can start a formula
        for value in row.values():
            try:
                float(value)
            except ValueError:
                assert not value.lstrip(" \n").startswith(("=", "+", "-", "@")), value


def test_writers_keep_numbers_and_neutralise_text(tmp_path: Path) -> None:
    rows = [{"n": -12.5, "i": np.int64(-3), "t": "-12.5", "f": "=1+1", "p": "+1", "a": "@A1",
             "tab": "\tx", "cr": "\r=1", "sp": "  =1", "ok": "L4-L5", "bell": "a\x07b"}]
    write_csv(rows, tmp_path / "t.csv")
    (got,) = list(csv.DictReader((tmp_path / "t.csv").open(newline="")))
    assert got == {"n": "-12.5", "i": "-3", "t": "'-12.5", "f": "'=1+1", "p": "'+1",
                   "a": "'@A1", "tab": "'\tx", "cr": "'\n=1", "sp": "'  =1", "ok": "L4-L5",
                   "bell": "a\x07b"}
    write_xlsx({"s": rows}, tmp_path / "t.xlsx")
    ws = load_workbook(tmp_path / "t.xlsx")["s"]
    cells = dict(zip([c.value for c in ws[1]], ws[2], strict=True))
    assert cells["n"].data_type == "n" and cells["n"].value == -12.5
    assert cells["i"].data_type == "n" and cells["i"].value == -3
    for key in ("t", "f", "p", "a", "tab", "sp", "ok"):
        assert cells[key].data_type == "s" and cells[key].value == rows[0][key], key
    assert cells["f"].quotePrefix and not cells["ok"].quotePrefix
    assert cells["bell"].value == "a\ufffdb"  # XML cannot hold it; was a crash


# ------------------------------------------------------------- 5. impossible areas


@needs_model
def test_absurd_spacing_header_is_flagged(tmp_path: Path, case) -> None:
    image = with_geometry(case.image, spacing=(9.9, 9.9, 4.0))
    write_image(image, tmp_path / "big.nii.gz")
    out = tmp_path / "out"
    run(tmp_path / "big.nii.gz", "--out", out)
    (row,) = csv_rows(out)
    assert row["status"] == "segmented"
    assert row["registration_flagged"] == "True"
    assert "pixel spacing 9.9 × 9.9 mm outside 0.2–3 mm" in row["registration_check"]
    header, prov = sheet(out, "provenance")
    flags = json.loads(prov[0][header.index("qc_flags")].value)
    assert "pixel spacing 9.9" in flags["slice 0"]


@needs_model
def test_spacing_typo_on_a_png_is_flagged(tmp_path: Path, case, capsys) -> None:
    pixels = np.clip(case.image.data, 0, 65535).astype(np.uint16)
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    for spacing, flagged in (("0.8", "False"), ("8", "True")):
        out = tmp_path / f"out{spacing}"
        run(tmp_path / "scan.png", "--spacing", spacing, "--out", out)
        (row,) = csv_rows(out)
        assert row["status"] == "segmented"
        assert ("pixel spacing" in row["registration_check"]) == (flagged == "True"), row
    assert "check these" in capsys.readouterr().out


def test_inflated_areas_of_given_labels_are_flagged(tmp_path: Path, case) -> None:
    """Spacing 2.5 mm is a possible pixel size, but here it is 4x too large: every area is
    16x too large. The given label maps are measured, and the row carries the flag."""
    data = tmp_path / "data"
    for name, spacing in (("right", case.image.geometry.spacing), ("wrong", (2.5, 2.5, 4.0))):
        image = with_geometry(case.image, spacing=spacing)
        write_image(image, data / "images" / f"{name}.nii.gz")
        write_labels(case.labels, image.geometry, data / "labels" / f"{name}.nii.gz")
    out = tmp_path / "out"
    assert run(data / "images", "--labels", data / "labels", "--out", out) == 0
    rows = {r["case"]: r for r in csv_rows(out)}
    assert float(rows["wrong"]["PS_L_csa_mm2"]) > AREA_MM2["PS"][1]
    assert rows["wrong"]["registration_flagged"] == "True"
    assert "PS_L area" in rows["wrong"]["registration_check"]
    assert "above plausible" in rows["wrong"]["registration_check"]
    assert rows["right"].get("registration_flagged") in (None, "", "False")


def _real_maps() -> list[dict[str, float]]:
    """Areas (mm²) of the 411 manual L4-L5 maps of mri515_t2_labels (0.6875 mm pixels)."""
    px = 0.6875 ** 2
    values = {50: "ES_R", 100: "MF_R", 150: "MF_L", 200: "ES_L"}
    out = []
    for path in sorted((DATA / "mri515_t2_labels").glob("*.png")):
        counts = np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
        out.append({short: float(counts[v] * px) for v, short in values.items()})
    return out


@pytest.mark.skipif(not (DATA / "mri515_t2_labels").is_dir(), reason="real label maps absent")
def test_area_ranges_pass_every_real_map_and_catch_a_3x_spacing_error() -> None:
    maps = _real_maps()
    assert len(maps) == 411
    assert [m for m in maps if area_reasons(m)] == []
    inflated = [{k: 9.0 * v for k, v in m.items()} for m in maps]  # spacing 3x too large
    assert all(area_reasons(m) for m in inflated)
    shrunk = [{k: v / 25.0 for k, v in m.items()} for m in maps]  # 5x too small
    assert all(area_reasons(m) for m in shrunk)


@pytest.mark.skipif(not (DATA / "musclemap_sub0001").is_dir(), reason="real data absent")
def test_area_ranges_pass_every_slice_of_the_real_volumes() -> None:
    names = {"musclemap_sub0001": {1: "MF_R", 2: "MF_L", 3: "ES_R", 4: "ES_L", 5: "PS_R",
                                   6: "PS_L"},
             "lpm_tum01": {1: "ES_R", 2: "MF_R", 3: "MF_L", 4: "ES_L"}}
    for folder, values in names.items():
        img = nib.load(DATA / folder / "labels.nii.gz")
        labels = np.asarray(img.dataobj)
        px = float(np.prod(img.header.get_zooms()[:2]))
        for k in range(labels.shape[2]):
            counts = np.bincount(labels[:, :, k].ravel().astype(int), minlength=9)
            areas = {short: float(counts[v] * px) for v, short in values.items()}
            assert area_reasons(areas) == [], (folder, k)


def test_check_row_adds_to_the_existing_flag_without_repeats(case) -> None:
    g = case.image.geometry
    row = {"registration_flagged": True, "registration_check": "MF asymmetry 70 %",
           **{f"{k}_csa_mm2": v for k, v in label_areas(case.labels, g).items()}}
    assert check_row(dict(row), g) == row  # plausible: unchanged
    wide = Geometry(g.shape, (9.9, 9.9, 4.0), g.origin, g.direction)
    flagged = check_row(dict(row), wide)
    reasons = flagged["registration_check"].split("; ")
    assert reasons[0] == "MF asymmetry 70 %" and any("9.9" in r for r in reasons)
    assert add_reasons(dict(flagged), reasons) == flagged
    clean = check_row({"MF_L_csa_mm2": 50000.0}, g)
    assert clean["registration_flagged"] is True


# ------------------------------------------------------------- 7. outlier pixels


def _int16_nifti(path: Path, pixels: np.ndarray, geometry: Geometry) -> Path:
    sitk.WriteImage(geometry.to_sitk(pixels), str(path))
    assert nib.load(path).get_data_dtype() == pixels.dtype
    return path


@needs_model
@pytest.mark.parametrize("where", ["corner", "centre"])
def test_one_extreme_pixel_does_not_fail_the_slice(tmp_path: Path, case, where: str) -> None:
    g = case.image.geometry
    clean = np.round(case.image.data).astype(np.int16)
    spot = (0, 0) if where == "corner" else (g.shape[0] // 2, g.shape[1] // 2)
    bad = clean.copy()
    bad[spot] = -32768
    huge = clean.astype(np.float32)
    huge[spot] = -1e30
    for name, pixels in (("clean", clean), ("int16", bad), ("float", huge)):
        _int16_nifti(tmp_path / f"{name}.nii.gz", pixels, g)
    out = tmp_path / "out"
    assert run(*(tmp_path / f"{n}.nii.gz" for n in ("clean", "int16", "float")),
               "--out", out) == 0
    rows = {r["case"]: r for r in csv_rows(out)}
    for name in ("int16", "float"):
        assert rows[name]["status"] == "segmented", rows[name]
        for short in ("PS_L", "MF_L", "MF_R", "ES_L", "ES_R"):
            ref = float(rows["clean"][f"{short}_csa_mm2"])
            assert float(rows[name][f"{short}_csa_mm2"]) == pytest.approx(ref, rel=0.03)


def test_outliers_leave_mask_and_normalisation_alone(case) -> None:
    img = case.image
    ref_mask = body_mask(img)
    data = img.data.astype(np.float32).copy()
    data[5, 7] = -32768.0
    data[9, 11] = 1e30
    data[168, 200] = -1e30  # inside the body
    noisy = img.with_data(data)
    mask = body_mask(noisy)
    assert (mask != ref_mask).sum() < 0.002 * ref_mask.sum()
    config = NormalizeConfig(method="median_iqr", clip_low=None, clip_high=None)
    ref = normalize(img, ref_mask, config).data
    got = normalize(noisy, ref_mask, config).data
    assert np.all(np.isfinite(got)) and np.abs(got).max() < 4 * np.abs(ref).max()
    others = np.ones(data.shape, bool)
    others[5, 7] = others[9, 11] = others[168, 200] = False
    assert np.allclose(got[others], ref[others], atol=1e-3)


# ------------------------------------------------------------- 15. non-axial planes


SAGITTAL = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # columns posterior, rows down


@needs_model
def test_sagittal_and_oblique_slices_are_flagged(tmp_path: Path, case) -> None:
    planes = {"sagittal": SAGITTAL, "rolled60": rotation("y", 60.0),
              "disc20": rotation("x", 20.0)}  # a disc-angled axial slice stays unflagged
    for name, direction in planes.items():
        write_image(with_geometry(case.image, direction=direction), tmp_path / f"{name}.nii.gz")
    out = tmp_path / "out"
    run(*(tmp_path / f"{n}.nii.gz" for n in planes), "--out", out)
    rows = {r["case"]: r for r in csv_rows(out)}
    for name in ("sagittal", "rolled60"):
        assert rows[name]["registration_flagged"] == "True", rows[name]
        assert "not an axial slice" in rows[name]["registration_check"]
    assert "not an axial slice" not in rows["disc20"]["registration_check"]


def test_sagittal_given_labels_are_flagged(tmp_path: Path, case) -> None:
    data = tmp_path / "data"
    image = with_geometry(case.image, direction=SAGITTAL)
    write_image(image, data / "images" / "sag.nii.gz")
    write_labels(case.labels, image.geometry, data / "labels" / "sag.nii.gz")
    out = tmp_path / "out"
    assert run(data / "images", "--labels", data / "labels", "--out", out) == 0
    (row,) = csv_rows(out)
    assert row["registration_flagged"] == "True"
    assert "not an axial slice (plane 90° from axial" in row["registration_check"]


def test_plane_tilt() -> None:
    g = Geometry((4, 4))
    assert plane_tilt_deg(g) == pytest.approx(0.0) and not_axial_reason(g) is None
    assert plane_tilt_deg(Geometry((4, 4), direction=SAGITTAL)) == pytest.approx(90.0)
    assert plane_tilt_deg(Geometry((4, 4), direction=rotation("x", 30.0))) == pytest.approx(30)
    assert not_axial_reason(Geometry((4, 4), direction=rotation("y", 50.0)))
