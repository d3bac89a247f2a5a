"""Whole stacks and Dixon pairs through the main job: a row per slice, one label volume on
the input's grid, Dixon fat fraction per muscle, and bad stacks named clearly."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _helpers_io import write_series

from napari_paraspinal.case_input import DixonRef, pair_inputs
from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.io import InputRef
from napari_paraspinal.core.slices import parse_slices
from napari_paraspinal.jobs import Cancel, Progress
from napari_paraspinal.pipeline import RunConfig
from napari_paraspinal.realdata import default_real_data_dir
from napari_paraspinal.run_batch import run

LPM = default_real_data_dir() / "lpm_tum01"
MUSCLEMAP = default_real_data_dir() / "musclemap_sub0001"
needs_lpm = pytest.mark.skipif(not (LPM / "water.nii.gz").is_file(),
                               reason=f"real Dixon case not found at {LPM} (../shared/data)")


def test_parse_slices() -> None:
    assert parse_slices("3, 5-7,3") == [3, 5, 6, 7]
    assert parse_slices("0;2", count=3) == [0, 2]
    for bad in ("", "a", "5-3", "-1"):
        with pytest.raises(ValueError):
            parse_slices(bad)
    with pytest.raises(ValueError, match="0-2"):
        parse_slices("3", count=3)


@needs_lpm
def test_stack_rows_per_slice_and_label_volume_on_the_input_grid(tmp_path: Path) -> None:
    src = LPM / "water.nii.gz"
    steps: list[tuple[int, int, str]] = []
    (result,) = run([src], RunConfig(out_dir=tmp_path, slices=[12, 10, 11]),
                    progress=lambda p: steps.append((p.done, p.total, p.message)))
    assert result.status == "ok"
    assert [r["slice"] for r in result.rows] == [10, 11, 12]
    assert [d for d, t, _ in steps] == [1, 2, 3, 3] and {t for _, t, _ in steps} == {3}
    header = nib.load(src)
    positions = [r["slice_position_mm"] for r in result.rows]
    assert np.diff(positions) == pytest.approx([header.header.get_zooms()[2]] * 2, abs=1e-3)
    volume = nib.load(result.outputs["labels"])
    # the same grid as the input, read by another library than the one that wrote it
    np.testing.assert_allclose(volume.affine, header.affine, atol=1e-4)
    assert volume.shape == header.shape
    data = np.asarray(volume.dataobj)
    assert data[..., [10, 11, 12]].any(axis=(0, 1)).all()
    assert not data[..., :10].any() and not data[..., 13:].any()
    for row in result.rows:  # areas of the table are the volume's, in mm²
        k = row["slice"]
        pixel = float(np.prod(header.header.get_zooms()[:2]))
        assert row["MF_L_csa_mm2"] == pytest.approx((data[..., k] == 5).sum() * pixel, rel=1e-3)
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == [
        "water_010.png", "water_011.png", "water_012.png"]
    with open(tmp_path / "measurements.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["slice"]) for r in rows] == [10, 11, 12]


@needs_lpm
def test_dixon_pair_fat_fraction_is_the_definition(tmp_path: Path) -> None:
    (ref,) = pair_inputs([LPM / "water.nii.gz"], [LPM / "fat.nii.gz"])
    (result,) = run([ref], RunConfig(out_dir=tmp_path, slices=[14, 20], overlays=False))
    assert result.status == "ok", result.message
    labels = np.asarray(nib.load(result.outputs["labels"]).dataobj)
    water = np.asarray(nib.load(LPM / "water.nii.gz").dataobj, np.float64)
    fat = np.asarray(nib.load(LPM / "fat.nii.gz").dataobj, np.float64)
    for row in result.rows:
        k = row["slice"]
        assert "origins differ" in row["notes"]  # paired by voxel, and said so
        total = water[..., k] + fat[..., k]
        for value, short in ((5, "MF_L"), (6, "MF_R"), (7, "ES_L"), (8, "ES_R")):
            inside = labels[..., k] == value
            if not inside.any():
                assert row[f"{short}_ff_pct"] is None
                continue
            ok = inside & (total >= 0.05 * np.percentile(total, 99)) & (total > 0)
            expected = 100 * np.mean(fat[..., k][ok] / total[ok])
            assert row[f"{short}_ff_pct"] == pytest.approx(expected, abs=0.5)


@needs_lpm
def test_bad_dixon_pairs_are_named_and_others_go_on(tmp_path: Path) -> None:
    if not (MUSCLEMAP / "image.nii.gz").is_file():
        pytest.skip(f"real case not found at {MUSCLEMAP}")
    odd = DixonRef(InputRef(LPM / "water.nii.gz"), InputRef(MUSCLEMAP / "image.nii.gz"))
    good = DixonRef(InputRef(LPM / "water.nii.gz"), InputRef(LPM / "fat.nii.gz"))
    bad, ok = run([odd, good], RunConfig(out_dir=tmp_path, slices=[14], overlays=False))
    assert bad.status == "failed" and "image.nii.gz" in bad.message
    assert "20 slices" in bad.message and "29" in bad.message
    assert ok.status == "ok"
    extra = tmp_path / "b_fat.nii.gz"
    shutil.copy(LPM / "fat.nii.gz", extra)
    with pytest.raises(InputError, match="b_fat.nii.gz: a fat image without a water image"):
        pair_inputs([LPM / "water.nii.gz"], [LPM / "fat.nii.gz", extra])


def test_dixon_and_stack_cli_errors(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "napari_paraspinal", "run", "--out", str(tmp_path / "o")]
    only_fat = subprocess.run([*cmd, "--fat", str(tmp_path)], capture_output=True, text=True)
    assert only_fat.returncode == 2 and "--fat needs --water" in only_fat.stderr
    bad_slices = subprocess.run([*cmd, str(tmp_path), "--slices", "4-2"], capture_output=True,
                                text=True)
    assert bad_slices.returncode == 2 and "4-2" in bad_slices.stderr


def test_uneven_dicom_series_is_named_and_others_go_on(tmp_path: Path) -> None:
    series = tmp_path / "uneven"
    write_series(series, n=5)
    (series / "IM0003").unlink()  # slice 2 of 5 gone: a 6 mm gap among 3 mm steps
    even = tmp_path / "even"
    write_series(even, n=3)
    results = run([series, even], RunConfig(out_dir=tmp_path / "o", model=None,
                                            overlays=False))
    by_case = {r.case: r for r in results}
    assert by_case["uneven"].status == "failed"
    assert "not evenly spaced" in by_case["uneven"].message
    assert str(series) in by_case["uneven"].message
    assert by_case["even"].status == "ok" and len(by_case["even"].rows) == 3


def test_chosen_slice_outside_the_stack_is_named(tmp_path: Path) -> None:
    series = tmp_path / "s"
    write_series(series, n=3)
    (result,) = run([series], RunConfig(out_dir=tmp_path / "o", slices=[5], overlays=False))
    assert result.status == "failed" and "slice 5 does not exist" in result.message


@needs_lpm
def test_cancel_stops_between_batches(tmp_path: Path) -> None:
    cancel = Cancel()
    seen: list[int] = []

    def progress(event: Progress) -> None:
        seen.append(event.done)
        if event.done >= 1:
            cancel.set()

    src = tmp_path / "water.nii.gz"
    shutil.copy(LPM / "water.nii.gz", src)
    (result,) = run([src], RunConfig(out_dir=tmp_path / "o", overlays=False),
                    progress=progress, cancel=cancel)
    # the first batch (8 slices) finishes and is written; the rest is not started
    assert 1 <= len(result.rows) <= 8 < 29
    assert (tmp_path / "o" / "measurements.xlsx").is_file()


@needs_lpm
def test_real_stack_that_misses_the_sacrum_has_unknown_levels(tmp_path: Path) -> None:
    # L2-L5 never reaches the sacrum: no level may be presented as fact
    (result,) = run([LPM / "water.nii.gz"], RunConfig(out_dir=tmp_path, slices=[4, 5, 6],
                                                      overlays=False))
    assert [r["level"] for r in result.rows] == ["unknown"] * 3
    assert all(r["level_note"] for r in result.rows)


def test_levels_are_counted_from_the_sacrum_in_the_table() -> None:
    from napari_paraspinal.core.geometry import Geometry
    from napari_paraspinal.core.volume import StackGrid
    from napari_paraspinal.pipeline import count_levels

    # 4 mm slices from the sacrum up: discs at 60 mm (L5-S1) and 92 mm (L4-L5)
    z = np.arange(0, 120, 4.0)
    disc = [600.0 if abs(p - 60) <= 4 or abs(p - 92) <= 4 else 0.0 for p in z]
    rows = [{"status": "segmented", "level": "unknown", "slice_position_mm": p,
             "DI_csa_mm2": d} for p, d in zip(z, disc, strict=True)]
    count_levels(rows, StackGrid(Geometry((8, 8)), tuple(z), 4.0, (0.0, 0.0, 1.0)))
    by_z = {r["slice_position_mm"]: r for r in rows}
    assert by_z[60.0]["level"] == "L5-S1" and by_z[60.0]["mid_disc"]
    assert by_z[92.0]["level"] == "L4-L5" and by_z[92.0]["mid_disc"]
    assert by_z[76.0]["level"] == "L5"
