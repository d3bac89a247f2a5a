"""The real-data benchmark: the registry's label maps and in-phase sum, Dice pooling, and a
tiny ``bench_real`` run checked against Dice recomputed with numpy from nibabel's arrays."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _helpers_torch import torch_threads

from napari_paraspinal.bench_real import (
    STRUCTURES,
    DiceTally,
    bench_real,
    slice_indices,
    uncertainty_agreement,
    write_real_report,
)
from napari_paraspinal.cli import main
from napari_paraspinal.core.labels import BY_VALUE, ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from napari_paraspinal.realdata import (
    default_real_data_dir,
    load_series,
    read_series_slice,
    real_series,
)

DATA = default_real_data_dir()
needs_data = pytest.mark.skipif(
    len(real_series(DATA)) < 4,
    reason=f"real cases not found in {DATA} (shared/data beside the repository, or "
           "$PARASPINAL_REAL_DATA)",
)
PAIRS = ((PS_L, PS_R), (MF_L, MF_R), (ES_L, ES_R))


def by_name(name: str):
    return next(s for s in real_series(DATA) if s.name == name)


def world_x(labels: np.ndarray, geometry, value: int) -> float:
    j, i = np.nonzero(labels == value)
    assert i.size, f"label {value} absent from this slice"
    return float(geometry.index_to_world(i, j)[:, 0].mean())


# ---------------------------------------------------------------- no data needed


def test_slice_indices() -> None:
    assert slice_indices("all", 5) == [0, 1, 2, 3, 4]
    assert slice_indices("every4", 10) == [0, 4, 8]
    for bad in ("every0", "every", "some", "4"):
        with pytest.raises(ValueError, match="everyK"):
            slice_indices(bad, 10)


def test_tally_pools_counts_and_counts_failures() -> None:
    truth1 = np.zeros((6, 6), np.uint8)
    truth1[:2, :3] = MF_L  # 6 px
    truth2 = np.zeros((6, 6), np.uint8)
    truth2[:1, :2] = MF_L  # 2 px
    perfect = DiceTally((MF_L, ES_L))
    perfect.add(truth1.copy(), truth1)
    perfect.add(truth2.copy(), truth2)
    assert perfect.pooled()[MF_L] == 1.0 and perfect.slice_mean()[MF_L] == 1.0
    assert np.isnan(perfect.pooled()[ES_L])  # in neither map: nothing to score

    pred1 = np.zeros_like(truth1)
    pred1[:2, :2] = MF_L  # 4 px, all inside
    tally = DiceTally((MF_L,))
    tally.add(pred1, truth1)  # Dice 2*4/(4+6) = 0.8
    tally.add(None, truth2)  # failed slice: truth counted, nothing predicted
    assert tally.slices == 2
    assert tally.pooled()[MF_L] == pytest.approx(2 * 4 / (4 + 6 + 2))
    assert tally.slice_mean()[MF_L] == pytest.approx((0.8 + 0.0) / 2)


def test_registry_finds_nothing_in_an_empty_folder(tmp_path, monkeypatch) -> None:
    assert real_series(tmp_path) == []
    monkeypatch.setenv("PARASPINAL_REAL_DATA", str(tmp_path))
    assert default_real_data_dir() == tmp_path
    assert main(["bench", "real"]) == 2


# ---------------------------------------------------------------- real data


@needs_data
def test_series_and_annotations() -> None:
    names = [s.name for s in real_series(DATA)]
    assert names == ["lpm_tum01/water", "lpm_tum01/fat", "lpm_tum01/inphase",
                     "musclemap_sub0001/fat"]
    assert by_name("lpm_tum01/fat").annotated == (MF_L, MF_R, ES_L, ES_R)
    assert set(by_name("musclemap_sub0001/fat").annotated) == set(STRUCTURES)


@needs_data
@pytest.mark.parametrize("name, k", [("lpm_tum01/water", 12), ("lpm_tum01/fat", 12),
                                     ("lpm_tum01/inphase", 20), ("musclemap_sub0001/fat", 10)])
def test_left_structures_lie_at_larger_world_x(name: str, k: int) -> None:
    series = by_name(name)
    [(image, labels)] = load_series(series, [k])
    assert labels.dtype == np.uint8 and labels.shape == image.shape
    assert set(np.unique(labels)) == {0, *series.annotated}  # musclemap's QL is background
    for left, right in PAIRS:
        if left in series.annotated:
            assert world_x(labels, image.geometry, left) > world_x(labels, image.geometry,
                                                                   right)


@needs_data
def test_inphase_is_water_plus_fat_on_the_fat_grid() -> None:
    k = 7
    image, labels = read_series_slice(by_name("lpm_tum01/inphase"), k)
    fat_image, fat_labels = read_series_slice(by_name("lpm_tum01/fat"), k)
    lpm = DATA / "lpm_tum01"
    # array axes (i, j, k); a slice is rows j, columns i
    water = np.asanyarray(nib.load(lpm / "water.nii.gz").dataobj)[:, :, k].T
    fat = np.asanyarray(nib.load(lpm / "fat.nii.gz").dataobj)[:, :, k].T
    np.testing.assert_allclose(image.data, water.astype(np.float64) + fat, rtol=1e-6,
                               atol=1e-3)
    assert image.geometry == fat_image.geometry
    assert "water" in image.source and "fat" in image.source
    np.testing.assert_array_equal(labels, fat_labels)


@needs_data
def test_bench_real_dice_matches_numpy(tmp_path) -> None:
    series = by_name("musclemap_sub0001/fat")
    predictions: dict = {}
    with torch_threads(1):
        [row] = bench_real(series=[series], slices="every10", device="cpu",
                           predictions=predictions)
    assert row["slices"] == 2 and row["failed"] == 0
    assert row["flagged"].endswith(" of 2")
    assert row["seen_in_training"] is True  # the shipped model was trained on it
    # independent truth: nibabel's array and the README's table (1/2 MF R/L, 3/4 ES R/L,
    # 5/6 psoas R/L, 7/8 QL)
    raw = np.asanyarray(nib.load(DATA / "musclemap_sub0001" / "labels.nii.gz").dataobj)
    theirs = {MF_R: 1, MF_L: 2, ES_R: 3, ES_L: 4, PS_R: 5, PS_L: 6}
    inter = dict.fromkeys(STRUCTURES, 0)
    total = dict.fromkeys(STRUCTURES, 0)
    for k in (0, 10):
        pred = predictions[("musclemap_sub0001", "fat", k)]
        truth = raw[:, :, k].T
        for v in STRUCTURES:
            p, t = pred == v, truth == theirs[v]
            inter[v] += int(np.sum(p & t))
            total[v] += int(p.sum() + t.sum())
    dice = {v: 2 * inter[v] / total[v] for v in STRUCTURES}
    for v in STRUCTURES:
        assert row[BY_VALUE[v].short] == pytest.approx(dice[v], abs=1e-12)
    assert row["mean"] == pytest.approx(np.mean(list(dice.values())))
    assert 0.0 <= row["mean_per_slice"] <= 1.0
    assert row["uncertainty_spearman"] is None  # two slices rank nothing

    csv_path, md_path = write_real_report([row], tmp_path, "header")
    assert csv_path.read_text().splitlines()[0].startswith("case,contrast,slices,PS_L")
    assert md_path.read_text().startswith("header\n\n| case |")



@needs_data
def test_bench_real_series_picks_what_it_names(tmp_path, capsys) -> None:
    assert main(["bench", "real", "--series", "lpm_tum01/nope"]) == 2
    err = capsys.readouterr().err
    assert "no labelled real series 'lpm_tum01/nope'" in err and "lpm_tum01/water" in err
    with torch_threads(1):
        assert main(["bench", "real", "--series", "lpm_tum01/water", "--slices", "every15",
                     "--device", "cpu", "--out", str(tmp_path)]) == 0
    lines = (tmp_path / "bench_real.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("lpm_tum01,water,2,")


def test_uncertainty_agreement_is_the_rank_correlation_with_dice() -> None:
    rng = np.random.default_rng(3)
    scores = rng.random(12)
    dices = list(1.0 - scores + 0.3 * rng.random(12))
    ranks = [np.argsort(np.argsort(x)) for x in (scores, np.array(dices))]
    expected = np.corrcoef(*ranks)[0, 1]  # Spearman: Pearson of the ranks (no ties here)
    assert uncertainty_agreement(scores, dices) == pytest.approx(expected, abs=1e-12)
    assert expected < -0.5  # the construction: uncertain slices score worse
    # a slice with nothing annotated (Dice None) is left out, and so is its score
    assert uncertainty_agreement([*scores, 0.0], [*dices, None]) == pytest.approx(expected)
    assert uncertainty_agreement([0.1, 0.2], [0.9, 0.8]) is None
    assert uncertainty_agreement([0.1, 0.2, 0.3], [0.5, 0.5, 0.5]) is None  # no spread
