"""Dixon fat fraction: the definition F / (W + F) per muscle, pairing by voxel, refusals."""

import numpy as np
import pytest
import SimpleITK as sitk

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R
from napari_paraspinal.dixon import dixon_columns, fat_fraction_map, pair_dixon
from napari_paraspinal.realdata import default_real_data_dir, read_series_slice, real_series

LPM = default_real_data_dir() / "lpm_tum01"
needs_lpm = pytest.mark.skipif(not (LPM / "water.nii.gz").is_file(),
                               reason=f"real Dixon case not found at {LPM}")


def test_known_values() -> None:
    g = Geometry(shape=(20, 20))
    water = np.full(g.shape, 90.0)
    fat = np.full(g.shape, 10.0)
    labels = np.zeros(g.shape, np.uint8)
    labels[:10, :10] = MF_L  # 10 % fat
    labels[10:, 10:] = ES_R
    fat[10:, 10:], water[10:, 10:] = 30.0, 70.0  # 30 % fat
    water[19, 19] = fat[19, 19] = 0.0  # a noise pixel inside ES_R: left out
    row = dixon_columns(water, fat, labels, g)
    assert row["MF_L_ff_pct"] == pytest.approx(10.0)
    assert row["ES_R_ff_pct"] == pytest.approx(30.0)
    assert row["ES_R_ff_pixels_excluded"] == 1
    assert row["MF_L_ff_pixels_excluded"] == 0
    assert row["PS_L_ff_pct"] is None and row["MF_R_ff_pct"] is None
    ff, valid = fat_fraction_map(water, fat)
    assert not valid[19, 19] and ff[19, 19] == 0.0


def test_mismatched_size_is_refused_naming_the_fat_file() -> None:
    water = SliceImage(np.ones((256, 256), np.float32), Geometry(shape=(256, 256)), "w.nii.gz")
    fat = SliceImage(np.ones((400, 400), np.float32), Geometry(shape=(400, 400)),
                     "case_fat.nii.gz")
    with pytest.raises(InputError, match="case_fat.nii.gz.*400x400 does not match.*256x256"):
        pair_dixon(water, fat)
    fat = SliceImage(np.ones((256, 256), np.float32),
                     Geometry(shape=(256, 256), spacing=(1.2, 1.2, 4.0)), "case_fat.nii.gz")
    with pytest.raises(InputError, match="case_fat.nii.gz.*spacing"):
        pair_dixon(water, fat)


def _lpm() -> tuple:
    found = {s.contrast: s for s in real_series() if s.case == "lpm_tum01"}
    return found["water"], found["fat"]


@needs_lpm
def test_real_origins_differ_and_are_paired_by_voxel() -> None:
    ws, fs = _lpm()
    water, _ = read_series_slice(ws, 10)
    fat, _ = read_series_slice(fs, 10)
    w, f, notes = pair_dixon(water, fat)
    assert len(notes) == 1 and notes[0].startswith("fat paired with water by voxel: origins "
                                                   "differ by ")
    assert f.geometry == w.geometry and notes[0] in f.notes


@needs_lpm
@pytest.mark.parametrize("k", [3, 14, 25])
def test_real_columns_match_an_independent_computation(k: int) -> None:
    ws, fs = _lpm()
    water, labels = read_series_slice(ws, k)
    fat, _ = read_series_slice(fs, k)
    water, fat, _ = pair_dixon(water, fat)
    row = dixon_columns(water, fat, labels, water.geometry)
    # independent: whole volumes by SimpleITK, LPM label values (1 ES_R, 2 MF_R, 3 MF_L, 4 ES_L)
    w = sitk.GetArrayFromImage(sitk.ReadImage(str(LPM / "water.nii.gz")))[k].astype(float)
    f = sitk.GetArrayFromImage(sitk.ReadImage(str(LPM / "fat.nii.gz")))[k].astype(float)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(LPM / "labels.nii.gz")))[k]
    total = w + f
    keep = total >= 0.05 * np.percentile(total, 99)
    for theirs, ours in {1: ES_R, 2: MF_R, 3: MF_L, 4: ES_L}.items():
        m = (lab == theirs) & keep
        expected = 100 * np.mean(f[m] / total[m])
        short = {ES_R: "ES_R", MF_R: "MF_R", MF_L: "MF_L", ES_L: "ES_L"}[ours]
        assert row[f"{short}_ff_pct"] == pytest.approx(expected, abs=0.5), short
        assert 3.0 < row[f"{short}_ff_pct"] < 30.0  # a healthy volunteer's back muscles
