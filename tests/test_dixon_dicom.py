"""Dixon pairs found in a DICOM study by image type: real DICOM series written with pydicom
(the real Dixon case when the shared data are there, phantoms otherwise), run as a user runs
them, and the pairing rules one by one on headers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from _helpers_io import mr_small
from pydicom.uid import generate_uid

from napari_paraspinal.case_input import DixonRef
from napari_paraspinal.cli import main
from napari_paraspinal.core.listing import InputRef, list_inputs
from napari_paraspinal.dixon_dicom import (
    FAT,
    IN_PHASE,
    OPP_PHASE,
    WATER,
    pair_dixon_series,
    series_role,
)
from napari_paraspinal.realdata import default_real_data_dir
from napari_paraspinal.run_batch import _listed

LPM = default_real_data_dir() / "lpm_tum01"
needs_lpm = pytest.mark.skipif(not (LPM / "water.nii.gz").is_file(),
                               reason=f"real Dixon case (water.nii.gz, fat.nii.gz) not found "
                                      f"at {LPM}")
SIEMENS = {WATER: "DERIVED\\PRIMARY\\DIXON\\WATER", FAT: "DERIVED\\PRIMARY\\DIXON\\FAT",
           IN_PHASE: "DERIVED\\PRIMARY\\DIXON\\IN_PHASE",
           OPP_PHASE: "DERIVED\\PRIMARY\\DIXON\\OPP_PHASE"}


class Study:
    """One study (one StudyInstanceUID and frame of reference) of axial DICOM series."""

    def __init__(self, folder: Path, spacing: tuple[float, float] = (1.0, 1.0),
                 step: float = 4.0) -> None:
        self.folder, self.spacing, self.step = folder, spacing, step
        self.uid, self.frame = generate_uid(), generate_uid()

    def series(self, number: int, volume: np.ndarray, image_type: str | None,
               description: str = "", *, sub: str = "", shift: float = 0.0,
               study_uid: str | None = None) -> Path:
        """Write ``volume`` (slices, rows, cols) as series ``number``; ``shift`` moves its
        slice positions (mm) as another acquisition would be."""
        folder = self.folder / sub if sub else self.folder
        folder.mkdir(parents=True, exist_ok=True)
        uid = generate_uid()
        template = mr_small()
        for k, plane in enumerate(np.asarray(volume)):
            ds = template.copy()
            ds.StudyInstanceUID = study_uid or self.uid
            ds.FrameOfReferenceUID = self.frame
            ds.SeriesInstanceUID = uid
            ds.SeriesNumber = number
            ds.SeriesDescription = description
            if image_type is None:
                del ds.ImageType
            else:
                ds.ImageType = image_type.split("\\")
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = k + 1
            ds.Rows, ds.Columns = plane.shape
            ds.ImagePositionPatient = [-100.0, -120.0, k * self.step + shift]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.PixelSpacing = [self.spacing[1], self.spacing[0]]  # between rows, columns
            ds.SliceThickness = self.step
            ds.PixelData = np.clip(np.rint(plane), 0, 32767).astype(np.int16).tobytes()
            ds.save_as(folder / f"S{number:03d}_{k:04d}.dcm")
        return folder


def _cases(refs: list) -> tuple[list[DixonRef], list[InputRef]]:
    return ([r for r in refs if isinstance(r, DixonRef)],
            [r for r in refs if not isinstance(r, DixonRef)])


def _numbers(ref: InputRef | DixonRef) -> str:
    """Series numbers of a case, from its files (e.g. "5+6")."""
    parts = [ref.water, ref.fat] if isinstance(ref, DixonRef) else [ref]
    return "+".join(str(_series_number(p)) for p in parts)


def _series_number(ref: InputRef) -> int:
    for f in sorted(ref.path.glob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if ds.SeriesInstanceUID == ref.series_uid:
            return int(ds.SeriesNumber)
    raise AssertionError(f"no file of {ref}")


def _small(n: int = 3, shape: tuple[int, int] = (24, 20), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(50, 500, (n, *shape))


# --- roles -------------------------------------------------------------------------------

@pytest.mark.parametrize(("image_type", "description", "role", "how"), [
    ("DERIVED\\PRIMARY\\DIXON\\WATER", "t1_vibe_dixon_tra_F", WATER, "image type"),
    ("derived\\primary\\dixon\\fat", "", FAT, "image type"),  # case-insensitive
    ("DERIVED\\PRIMARY\\DIXON\\OPPOSED_PHASE", "", OPP_PHASE, "image type"),
    ("ORIGINAL\\PRIMARY\\W\\W", "", WATER, "image type"),  # Philips mDixon
    ("ORIGINAL\\PRIMARY\\F\\F", "", FAT, "image type"),
    ("ORIGINAL\\PRIMARY\\IP\\IP", "", IN_PHASE, "image type"),
    ("ORIGINAL\\PRIMARY\\OP\\OP", "", OPP_PHASE, "image type"),
    ("DERIVED\\PRIMARY\\IN PHASE", "", IN_PHASE, "image type"),  # GE IDEAL / FLEX
    ("DERIVED\\PRIMARY\\OUT PHASE", "", OPP_PHASE, "image type"),
    ("ORIGINAL\\PRIMARY\\OTHER", "t1_vibe_dixon_tra_W", WATER, "series description"),
    ("ORIGINAL\\PRIMARY\\M\\ND", "t1_vibe_dixon_tra_opp", OPP_PHASE, "series description"),
    (None, "t1_vibe_dixon_tra_in", IN_PHASE, "series description"),
    (None, "WATER: Ax LAVA-Flex", WATER, "series description"),
    (None, "mDixon opposed phase", OPP_PHASE, "series description"),
    (None, "lumbar_dixon_fat", FAT, "series description"),
    # never from a letter inside a word, nor from fat saturation or a fat fraction map
    (None, "T2W_TSE_FS_tra", None, ""),
    (None, "t1_fatsat_tra", None, ""),
    (None, "t2_tse_fat_sat", None, ""),
    (None, "DIXON fat fraction", None, ""),
    (None, "Wirbelsaeule_Fettanteil", None, ""),
    ("ORIGINAL\\PRIMARY\\M\\FFE", "T1 FFE", None, ""),
    ("DERIVED\\PRIMARY\\DIXON\\FF", "", None, ""),  # Siemens fat fraction map
    ("DERIVED\\PRIMARY\\WATER\\FAT", "", None, "image type"),  # two roles: none
])
def test_roles(image_type: str | None, description: str, role: str | None, how: str) -> None:
    values = image_type.split("\\") if image_type else None
    assert series_role(values, description) == (role, how)


# --- pairing rules on headers --------------------------------------------------------------

def test_philips_study_gives_one_dixon_case_and_keeps_the_t2w(tmp_path: Path) -> None:
    study = Study(tmp_path / "study")
    vol = _small()
    study.series(3, vol, "ORIGINAL\\PRIMARY\\M\\SE", "T2W_TSE_ax")
    study.series(5, vol, "ORIGINAL\\PRIMARY\\W\\W", "mDIXON")
    study.series(6, vol * 0.5, "ORIGINAL\\PRIMARY\\F\\F", "mDIXON")
    study.series(7, vol * 1.5, "ORIGINAL\\PRIMARY\\IP\\IP", "mDIXON")
    study.series(8, vol, "ORIGINAL\\PRIMARY\\OP\\OP", "mDIXON")
    refs, skipped = _listed([study.folder], tmp_path / "out")
    pairs, plain = _cases(refs)
    assert [_numbers(r) for r in refs] == ["3", "5+6"]  # in the inputs' order
    assert pairs[0].note == ("Dixon pair found by image type: water series 5, fat series 6; "
                             "in-phase series 7 and opposed-phase series 8 of this "
                             "acquisition not run separately")
    assert plain[0].note == ""  # the T2w: a plain case, nothing to say
    assert len(skipped) == 2
    assert "in-phase series 7: not run separately" in str(skipped[0])
    assert "opposed-phase series 8: not run separately" in str(skipped[1])


def test_description_fallback_and_series_folders(tmp_path: Path) -> None:
    study = Study(tmp_path / "study")
    vol = _small()
    for number, suffix in ((11, "W"), (12, "F"), (13, "in"), (14, "opp")):
        study.series(number, vol, "ORIGINAL\\PRIMARY\\OTHER", f"t1_vibe_dixon_tra_{suffix}",
                     sub=f"series{number}")
    listing = list_inputs([study.folder / "series12", study.folder / "series11",
                           study.folder / "series13", study.folder / "series14"])
    refs, skipped = pair_dixon_series(listing.refs)
    assert len(refs) == 1 and _numbers(refs[0]) == "11+12"  # water first, whatever the order
    assert refs[0].note.startswith("Dixon pair found by series description: water series "
                                   "11, fat series 12; in-phase series 13 and opposed-phase "
                                   "series 14")
    assert len(skipped) == 2


def test_two_water_series_are_not_paired(tmp_path: Path) -> None:
    study = Study(tmp_path / "study")
    vol = _small()
    study.series(5, vol, SIEMENS[WATER])
    study.series(6, vol, SIEMENS[FAT])
    study.series(9, vol, SIEMENS[WATER])  # e.g. a repeat
    study.series(7, vol, SIEMENS[IN_PHASE])
    refs, skipped = pair_dixon_series(list_inputs([study.folder]).refs)
    pairs, plain = _cases(refs)
    assert not pairs and not skipped
    assert [_numbers(r) for r in plain] == ["5", "6", "7", "9"]  # all plain cases
    notes = {_numbers(r): r.note for r in plain}
    expected = ("not paired as a Dixon case automatically: 2 water series (5, 9) and 1 fat "
                "series (6) of one acquisition; give the right pair with --water and --fat")
    assert notes == {"5": expected, "6": expected, "7": "", "9": expected}


@pytest.mark.parametrize("other", ["another study", "other positions", "other slice count",
                                   "no fat"])
def test_water_without_a_matching_fat_series(tmp_path: Path, other: str) -> None:
    study = Study(tmp_path / "study")
    vol = _small()
    study.series(5, vol, SIEMENS[WATER])
    if other == "another study":
        study.series(6, vol, SIEMENS[FAT], study_uid=generate_uid())
    elif other == "other positions":
        study.series(6, vol, SIEMENS[FAT], shift=2.0)
    elif other == "other slice count":
        study.series(6, vol[:2], SIEMENS[FAT])
    refs, _ = pair_dixon_series(list_inputs([study.folder]).refs)
    pairs, plain = _cases(refs)
    assert not pairs and len(plain) == (1 if other == "no fat" else 2)
    assert plain[0].note == ("not paired as a Dixon case automatically: water series 5 "
                             "without a fat series of the same acquisition (same study, "
                             "slice count, matrix, spacing, orientation and positions)")


def test_positions_within_a_tenth_of_a_pixel_pair(tmp_path: Path) -> None:
    study = Study(tmp_path / "study", spacing=(1.0, 1.0))
    study.series(5, _small(), SIEMENS[WATER])
    study.series(6, _small(), SIEMENS[FAT], shift=0.05)  # rounding in the export
    refs, _ = pair_dixon_series(list_inputs([study.folder]).refs)
    assert [_numbers(r) for r in refs] == ["5+6"]


def test_a_series_of_mixed_roles_is_not_paired(tmp_path: Path) -> None:
    study = Study(tmp_path / "study")
    study.series(5, _small(), SIEMENS[WATER])
    folder = study.series(6, _small(), SIEMENS[FAT])
    # one image of the fat series says water: not one Dixon image
    path = sorted(folder.glob("S006_*.dcm"))[1]
    ds = pydicom.dcmread(path)
    ds.ImageType = SIEMENS[WATER].split("\\")
    ds.save_as(path)
    refs, _ = pair_dixon_series(list_inputs([study.folder]).refs)
    assert [_numbers(r) for r in refs] == ["5", "6"]
    assert "water series 5 without a fat series" in refs[0].note


def test_pairing_can_be_turned_off(tmp_path: Path) -> None:
    study = Study(tmp_path / "study")
    study.series(5, _small(), SIEMENS[WATER])
    study.series(6, _small(), SIEMENS[FAT])
    study.series(7, _small(), SIEMENS[IN_PHASE])
    refs, skipped = _listed([study.folder], tmp_path / "out", dixon_pairing=False)
    assert [_numbers(r) for r in refs] == ["5", "6", "7"] and not skipped
    assert all(r.note == "" for r in refs)
    given = DixonRef(InputRef(tmp_path / "w.nii.gz"), InputRef(tmp_path / "f.nii.gz"))
    refs, skipped = _listed([given, study.folder], tmp_path / "out")  # with --water/--fat
    assert refs[0] is given and [_numbers(r) for r in refs[1:]] == ["5+6"]
    assert len(skipped) == 1


# --- as a user runs it -------------------------------------------------------------------

def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "measurements.csv").open()))


def test_phantom_study_runs_as_one_dixon_case_beside_a_t2w(tmp_path: Path, capsys, phantom) -> None:
    image = phantom(4242, matrix=(256, 288)).image
    spacing = tuple(float(v) for v in image.geometry.spacing[:2])
    study = Study(tmp_path / "study", spacing=spacing)
    fat = image.data[None]  # one slice of each; fat is 20 % of W + F everywhere
    study.series(2, fat, "ORIGINAL\\PRIMARY\\M\\ND", "t2_tse_tra")
    study.series(5, 4 * fat, SIEMENS[WATER], "t1_vibe_dixon_tra_W")
    study.series(6, fat, SIEMENS[FAT], "t1_vibe_dixon_tra_F")
    study.series(7, 5 * fat, SIEMENS[IN_PHASE], "t1_vibe_dixon_tra_in")
    out = tmp_path / "out"
    assert main(["run", str(study.folder), "--out", str(out), "--quiet",
                 "--no-overlays"]) == 0
    err = capsys.readouterr().err
    assert "in-phase series 7: not run separately" in err
    rows = _rows(out)
    assert len({r["case"] for r in rows}) == 2 and len(rows) == 2
    t2w, dixon = sorted(rows, key=lambda r: "MF_L_ff_pct" in r and bool(r["MF_L_ff_pct"]))
    assert dixon["status"] == "segmented" and t2w["status"] == "segmented"
    assert dixon["notes"].startswith("Dixon pair found by image type: water series 5, fat "
                                     "series 6; in-phase series 7 of this acquisition not "
                                     "run separately")
    for muscle in ("MF_L", "MF_R", "ES_L", "ES_R"):
        assert float(dixon[f"{muscle}_ff_pct"]) == pytest.approx(20.0, abs=0.5), muscle
        assert t2w[f"{muscle}_ff_pct"] == ""  # a plain case: no Dixon fat fraction
    assert "Dixon" not in t2w["notes"]
    manifest = json.loads((out / "run.json").read_text())
    assert any("in-phase series 7" in s for s in manifest["skipped"])


@needs_lpm
def test_real_dixon_study_runs_as_one_dixon_case(tmp_path: Path) -> None:
    """Slices 13-14 of the real Dixon case as a Siemens study: water, fat, in-phase and
    opposed-phase series (one acquisition, the water image's grid for all, as a scanner
    writes them), each with its DIXON ImageType."""
    ks = [13, 14]
    water = sitk.GetArrayFromImage(sitk.ReadImage(str(LPM / "water.nii.gz")))[ks]
    fat = sitk.GetArrayFromImage(sitk.ReadImage(str(LPM / "fat.nii.gz")))[ks]
    water, fat = water.astype(float), np.rint(fat)
    spacing = sitk.ReadImage(str(LPM / "water.nii.gz")).GetSpacing()
    study = Study(tmp_path / "lpm_tum01", spacing=spacing[:2], step=spacing[2])
    for number, role, volume in ((5, WATER, water), (6, FAT, fat), (7, IN_PHASE, water + fat),
                                 (8, OPP_PHASE, np.abs(water - fat))):
        study.series(number, volume, SIEMENS[role], f"t1_vibe_dixon_tra_{role}")
    out = tmp_path / "out"
    assert main(["run", str(study.folder), "--out", str(out), "--quiet",
                 "--no-overlays"]) == 0
    rows = _rows(out)
    assert len(rows) == 2 and len({r["case"] for r in rows}) == 1  # one case, two slices
    for row in rows:
        assert row["status"] == "segmented"
        assert row["notes"].startswith("Dixon pair found by image type: water series 5, fat "
                                       "series 6; in-phase series 7 and opposed-phase series "
                                       "8 of this acquisition not run separately")
        for muscle in ("MF_L", "MF_R", "ES_L", "ES_R"):
            assert 3.0 < float(row[f"{muscle}_ff_pct"]) < 30.0, muscle  # healthy volunteer
