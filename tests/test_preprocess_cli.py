"""``paraspinal preprocess`` and ``paraspinal atlas build`` on real files."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk
from PIL import Image

from napari_paraspinal.cli import main
from napari_paraspinal.core.io import read_slice
from napari_paraspinal.phantom import write_dataset
from napari_paraspinal.preprocess.atlas import load_atlases


def test_preprocess_writes_atlas_image_bias_transform_and_qc(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    write_dataset(data, n=2, seed=840_000, level="both")
    (data / "images" / "broken.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main(["preprocess", str(data / "images"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "broken.nii.gz: ERROR" in text
    assert "2 of 3 slices preprocessed" in text
    for stem, level in (("phantom_L4L5_s840000", "L4-L5"), ("phantom_L5S1_s840001", "L5-S1")):
        atlas_img = sitk.ReadImage(str(out / f"{stem}_atlas.nii.gz"))
        assert atlas_img.GetSize() == (256, 256) and atlas_img.GetSpacing() == (1.0, 1.0)
        native = read_slice(data / "images" / f"{stem}.nii.gz")
        bias = read_slice(out / f"{stem}_bias.nii.gz")
        assert bias.geometry.same_grid(native.geometry)
        assert 0.3 < float(np.median(bias.data)) < 3.0
        transform = sitk.ReadTransform(str(out / f"{stem}_atlas_to_plane.tfm"))
        assert transform.GetDimension() == 2
        qc = json.loads((out / f"{stem}_qc.json").read_text())
        assert qc["level"] == level and "body_dice" in qc and "mapping" in qc
        png = np.asarray(Image.open(out / f"{stem}_qc.png"))
        assert png.ndim == 3 and png.shape[1] > png.shape[0]


def test_atlas_build_command(tmp_path, capsys) -> None:
    data = tmp_path / "data"
    write_dataset(data, n=4, seed=840_100, level="L5-S1")
    assert main(["atlas", "build", str(data), "--out", str(tmp_path / "atlases"),
                 "--rounds", "1"]) == 0
    out = capsys.readouterr()
    assert "L5-S1: atlas of 4 cases" in out.out
    assert out.err.splitlines()[-1] == "[4/4] [L5-S1] registration, round 1 of 1"
    assert set(load_atlases(tmp_path / "atlases")) == {"L5-S1"}


def test_atlas_build_refuses_a_folder_without_labels(tmp_path, capsys) -> None:
    (tmp_path / "images").mkdir()
    assert main(["atlas", "build", str(tmp_path), "--out", str(tmp_path / "a")]) == 2
    assert "images/ and labels/" in capsys.readouterr().err
