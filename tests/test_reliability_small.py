"""Small attacks on the product, each on real files (phantom NIfTI written by the project,
SimpleITK volumes, pydicom's MR_small): bad ``--labelled`` values, an all-zero map vouched
for, label maps in another dataset's 1–4 convention or outside 0–8, and absurdly fine or
non-finite pixel spacing."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from _helpers_io import bundled, write_raw_nifti

from napari_paraspinal.cli import main
from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.io import MIN_SPACING_MM, read_labels, read_slice
from napari_paraspinal.core.labels import (
    ES_L,
    ES_R,
    MF_L,
    MF_R,
    PS_L,
    PS_R,
    LabelListError,
    convention_note,
    parse_labelled,
)
from napari_paraspinal.core.writers import write_labels
from napari_paraspinal.project.records import ProjectError
from napari_paraspinal.project.store import Project

STEM = "phantom_L4L5_s000900"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One phantom slice (NIfTI) and its exact label map."""
    root = tmp_path_factory.mktemp("small")
    assert main(["phantom", str(root), "--n", "1", "--seed", "900"]) == 0
    assert (root / "images" / f"{STEM}.nii.gz").is_file()
    return root


@pytest.fixture()
def project(data: Path, tmp_path: Path) -> tuple[Path, str]:
    """A fresh project holding the phantom as its one case (no segmentation needed)."""
    root = tmp_path / "project"
    assert main(["project", "init", str(root)]) == 0
    assert main(["project", "add", str(root), str(data / "images" / f"{STEM}.nii.gz")]) == 0
    with Project.open(root) as p:
        (case,) = p.cases()
    return root, case.id


def truth(data: Path) -> Path:
    return data / "labels" / f"{STEM}.nii.gz"


def versions(root: Path, cid: str) -> int:
    with Project.open(root) as p:
        return len(p.label_versions(cid))


def written(labels: np.ndarray, root: Path, cid: str, path: Path) -> Path:
    """``labels`` written with the project's writer on the case's grid."""
    with Project.open(root) as p:
        return write_labels(labels, p.case(cid).geometry, path)


# ------------------------------------------------------------------ a. --labelled values


@pytest.mark.parametrize(("value", "why"), [
    ("9", "9 is not a label value"),
    ("0", "0 is the background"),
    ("abc", "'abc' is not a label value"),
    ("5,x", "'x' is not a label value"),
    ("", "no label value given"),
])
def test_bad_labelled_values_get_one_clear_message(
        project: tuple[Path, str], data: Path, capsys: pytest.CaptureFixture[str],
        value: str, why: str) -> None:
    root, cid = project
    with pytest.raises(SystemExit) as exit_:
        main(["project", "correct", str(root), cid, str(truth(data)), "--labelled", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "--labelled" in err and "label values 1-8" in err and "comma-separated" in err
    assert why in err, err
    assert versions(root, cid) == 0  # nothing saved


def test_labelled_parser_accepts_lists_and_is_a_value_error() -> None:
    assert parse_labelled(" 8, 5,6,5 ") == [5, 6, 8]
    with pytest.raises(ValueError, match="1-8"):
        parse_labelled("1,2,12")
    assert issubclass(LabelListError, ValueError)


# ------------------------------------------------------------------ b. all-zero map vouched for


@pytest.mark.parametrize(("kind", "labelled"), [("verified", []),
                                               ("corrected", ["--labelled", "3,4"])])
def test_all_zero_map_cannot_vouch_for_labels(
        project: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        kind: str, labelled: list[str]) -> None:
    root, cid = project
    with Project.open(root) as p:
        shape = p.case(cid).geometry.shape
    empty = written(np.zeros(shape, np.uint8), root, cid, tmp_path / "empty.nii.gz")
    capsys.readouterr()
    code = main(["project", "correct", str(root), cid, str(empty), "--kind", kind, *labelled])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert "empty" in err and cid in err and "Nothing was saved" in err
    assert versions(root, cid) == 0
    with Project.open(root) as p, pytest.raises(ProjectError, match="every pixel is 0"):
        p.save_labels(cid, np.zeros(shape, np.uint8), "corrected", labelled=[PS_L])
    # a model's empty prediction vouches for nothing: still recorded as automatic
    with Project.open(root) as p:
        assert p.save_labels(cid, np.zeros(shape, np.uint8), "automatic").kind == "automatic"


def test_vouched_but_absent_labels_are_saved_and_named(
        project: tuple[Path, str], data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root, cid = project
    with Project.open(root) as p:
        labels = read_labels(truth(data), p.case(cid).geometry)
    assert {PS_L, PS_R} <= set(np.unique(labels).tolist())
    no_psoas = np.where(np.isin(labels, [PS_L, PS_R]), 0, labels).astype(np.uint8)
    path = written(no_psoas, root, cid, tmp_path / "no_psoas.nii.gz")
    capsys.readouterr()
    assert main(["project", "correct", str(root), cid, str(path), "--kind", "verified"]) == 0
    err = capsys.readouterr().err
    assert "vouched as absent" in err and "3 PS_L, 4 PS_R" in err
    assert "5 MF_L" not in err
    with Project.open(root) as p:
        assert p.case(cid).verified_labels == list(range(1, 9))  # the person's word stands
        saves = [e for e in p.history(cid) if e[2] == "save"]
        assert "3 PS_L, 4 PS_R" in saves[-1][3]
    # a full map vouched for in full says nothing
    assert main(["project", "correct", str(root), cid, str(truth(data))]) == 0
    assert "vouched as absent" not in capsys.readouterr().err


# ------------------------------------------------------------------ c. other conventions


def lpm_style(labels: np.ndarray) -> np.ndarray:
    """The phantom's muscles in the LPM dataset's values (1 ES_R, 2 MF_R, 3 MF_L, 4 ES_L),
    spine, disc and psoas dropped, as that dataset's files hold them."""
    out = np.zeros_like(labels)
    for new, old in enumerate((ES_R, MF_R, MF_L, ES_L), start=1):
        out[labels == old] = new
    return out


def test_labels_in_values_1_to_4_get_a_convention_note(
        project: tuple[Path, str], data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root, cid = project
    with Project.open(root) as p:
        geometry = p.case(cid).geometry
    lpm = lpm_style(read_labels(truth(data), geometry))
    path = written(lpm, root, cid, tmp_path / "lpm.nii.gz")
    notes: list[str] = []
    got = read_labels(path, geometry, notes=notes)
    assert np.array_equal(got, lpm)
    assert len(notes) == 1 and "1-4 only" in notes[0] and "another convention" in notes[0]
    clean: list[str] = []
    read_labels(truth(data), geometry, notes=clean)
    assert clean == []
    # project correct: accepted (a warning, not a refusal), the note on stderr
    capsys.readouterr()
    assert main(["project", "correct", str(root), cid, str(path)]) == 0
    err = capsys.readouterr().err
    assert "another convention" in err and path.name in err
    assert "vouched as absent" in err and "5 MF_L, 6 MF_R, 7 ES_L, 8 ES_R" in err


def test_run_with_given_labels_in_another_convention_says_so(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    shutil.copy(data / "images" / f"{STEM}.nii.gz", images / "lpm.nii.gz")
    image = read_slice(images / "lpm.nii.gz")
    write_labels(lpm_style(read_labels(truth(data), image.geometry)), image.geometry,
                 labels / "lpm.nii.gz")
    out = tmp_path / "out"
    capsys.readouterr()
    main(["run", str(images), "--labels", str(labels), "--out", str(out), "--no-overlays"])
    said = capsys.readouterr().out  # the case's line carries its notes
    assert "lpm:" in said and "another convention" in said
    rows = list(csv.DictReader((out / "measurements.csv").open(encoding="utf-8")))
    assert rows and rows[0]["case"] == "lpm"
    assert "another convention" in rows[0]["notes"]  # and so does its row


REAL_LPM = Path(__file__).resolve().parents[2] / "shared" / "data" / "lpm_tum01"


@pytest.mark.skipif(not (REAL_LPM / "labels_water_header.nii.gz").is_file(),
                    reason=f"the real LPM case is not in {REAL_LPM}")
def test_real_lpm_labels_get_the_note() -> None:
    """The real LPM file (1 ES_R, 2 MF_R, 3 MF_L, 4 ES_L) read as if it were ours."""
    image = read_slice(REAL_LPM / "water.nii.gz", index=12)
    notes: list[str] = []
    labels = read_labels(REAL_LPM / "labels_water_header.nii.gz", image.geometry, notes=notes)
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 3, 4}
    assert len(notes) == 1 and "another convention" in notes[0] and "LPM" in notes[0]


def test_whole_volume_decides_the_convention(tmp_path: Path) -> None:
    """A volume whose edge slice holds only spine and disc is this product's convention."""
    vol = np.zeros((3, 32, 32), np.uint8)
    vol[0, 4:8, 4:8] = 1
    vol[0, 10:14, 10:14] = 2
    vol[1:, 4:8, 4:8] = MF_L
    vol[1:, 20:24, 20:24] = ES_R
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.8, 0.8, 4.0))
    sitk.WriteImage(img, str(tmp_path / "vol.nrrd"))
    notes: list[str] = []
    edge = read_labels(tmp_path / "vol.nrrd", index=0, notes=notes)
    assert set(np.unique(edge).tolist()) == {0, 1, 2}
    assert notes == []
    assert convention_note(edge) is not None  # the slice alone would have looked odd


def test_label_values_outside_0_to_8_are_refused(
        project: tuple[Path, str], data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root, cid = project
    with Project.open(root) as p:
        geometry = p.case(cid).geometry
    labels = read_labels(truth(data), geometry).astype(np.int16)
    labels[labels == ES_R] = 12
    path = tmp_path / "twelve.nii.gz"
    sitk.WriteImage(geometry.to_sitk(labels), str(path))
    with pytest.raises(InputError, match="0–8, found 0–12") as err:
        read_labels(path, geometry)
    assert "twelve.nii.gz" in str(err.value)
    capsys.readouterr()
    assert main(["project", "correct", str(root), cid, str(path)]) == 2
    assert "0–8" in capsys.readouterr().err
    assert versions(root, cid) == 0


# ------------------------------------------------------------------ d. absurd pixel spacing


def _with_spacing(data: Path, path: Path, spacing: float) -> Path:
    img = sitk.ReadImage(str(data / "images" / f"{STEM}.nii.gz"))
    img.SetSpacing((spacing, spacing, img.GetSpacing()[2]))
    sitk.WriteImage(img, str(path))
    return path


@pytest.mark.parametrize("spacing", [0.001, 0.049])
def test_microscopic_spacing_is_refused_naming_the_file(
        data: Path, tmp_path: Path, spacing: float) -> None:
    path = _with_spacing(data, tmp_path / "tiny.nii.gz", spacing)
    with pytest.raises(InputError) as err:
        read_slice(path)
    message = str(err.value)
    assert "tiny.nii.gz" in message and f"{spacing:g}" in message and "spacing" in message
    assert f"{MIN_SPACING_MM:g}" in message and "constant" not in message


def test_smallest_plausible_spacing_is_still_read(data: Path, tmp_path: Path) -> None:
    path = _with_spacing(data, tmp_path / "fine.nii.gz", MIN_SPACING_MM)
    assert read_slice(path).geometry.spacing[0] == pytest.approx(MIN_SPACING_MM)


def test_run_reports_tiny_spacing_not_a_constant_image(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _with_spacing(data, tmp_path / "tiny.nii.gz", 0.001)
    out = tmp_path / "out"
    main(["run", str(path), "--out", str(out), "--no-overlays"])
    rows = list(csv.DictReader((out / "measurements.csv").open(encoding="utf-8")))
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert "pixel spacing 0.001" in rows[0]["notes"] and "constant" not in rows[0]["notes"]


def test_non_finite_nifti_spacing_is_refused(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    path = write_raw_nifti(tmp_path / "nan.nii", pixels, pixdim=(float("nan"), 0.8))
    with pytest.raises(InputError, match="spacing") as err:
        read_slice(path)
    assert "nan.nii" in str(err.value)


def test_microscopic_dicom_pixel_spacing_is_refused(tmp_path: Path) -> None:
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    ds.PixelSpacing = [0.001, 0.001]
    ds.save_as(tmp_path / "tiny.dcm")
    with pytest.raises(InputError, match="spacing 0.001") as err:
        read_slice(tmp_path / "tiny.dcm")
    assert "tiny.dcm" in str(err.value)


def test_project_add_refuses_tiny_spacing(data: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "project"
    assert main(["project", "init", str(root)]) == 0
    path = _with_spacing(data, tmp_path / "tiny.nii.gz", 0.001)
    capsys.readouterr()
    assert main(["project", "add", str(root), str(path)]) == 2
    err = capsys.readouterr().err
    assert "tiny.nii.gz" in err and "spacing" in err
    with Project.open(root) as p:
        assert p.cases() == []
