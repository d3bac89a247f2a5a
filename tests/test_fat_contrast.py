"""Fat contrast from the slice: bright on fat-weighted images, dark on water images."""

import numpy as np
import pytest

from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.fat_contrast import detect_fat_contrast, fat_is_bright
from napari_paraspinal.realdata import default_real_data_dir, read_series_slice, real_series

ROOT = default_real_data_dir()


def _series(case: str, contrast: str):
    found = [s for s in real_series() if s.case == case and s.contrast == contrast]
    if not found:
        pytest.skip(f"real case {case}/{contrast} not found under {ROOT}")
    return found[0]


@pytest.mark.parametrize("contrast, expected", [("water", "dark"), ("fat", "bright"),
                                                ("inphase", "bright")])
def test_lpm_dixon_images(contrast: str, expected: str) -> None:
    series = _series("lpm_tum01", contrast)
    for k in (0, 14, 28):
        image, labels = read_series_slice(series, k)
        assert detect_fat_contrast(image, labels) == expected, k


def test_musclemap_fat_image_is_bright() -> None:
    series = _series("musclemap_sub0001", "fat")
    for k in (2, 10, 18):
        image, labels = read_series_slice(series, k)
        assert detect_fat_contrast(image, labels) == "bright", k


@pytest.mark.parametrize("contrast, expected", [("T2w", True), ("T1w", True),
                                                ("dixon_water", False)])
def test_phantoms(contrast: str, expected: bool, phantom) -> None:
    for seed in range(3):
        case = phantom(seed, level=('L4-L5', 'L5-S1')[seed % 2], contrast=contrast)
        assert fat_is_bright(case.image, case.labels) is expected, seed


def test_unknown_without_muscles_or_contrast(phantom) -> None:
    case = phantom(0)
    empty = np.zeros_like(case.labels)
    assert detect_fat_contrast(case.image, empty) == "unknown"
    flat = SliceImage(np.full(case.labels.shape, 100.0, np.float32),
                      Geometry(shape=case.labels.shape))
    body = np.ones(case.labels.shape, bool)
    assert detect_fat_contrast(flat, case.labels, mask=body) == "unknown"
    assert fat_is_bright(flat, case.labels, mask=body) is None
