"""Real labelled lumbar MRI cases (see shared/data/README.md): they read with the right
geometry, their labels lie on the image grid, and patient left/right agree with the README."""

from pathlib import Path

import numpy as np
import pytest

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.geometry import Geometry
from napari_paraspinal.core.io import list_slices, read_labels, read_slice, validate_slice

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MUSCLEMAP = DATA / "musclemap_sub0001"
LPM = DATA / "lpm_tum01"

pytestmark = pytest.mark.skipif(
    not (MUSCLEMAP / "image.nii.gz").exists() or not (LPM / "fat.nii.gz").exists(),
    reason=f"real cases not found in {DATA} (shared/data beside the repository)",
)


def world_x(labels: np.ndarray, g: Geometry, value: int) -> float:
    """Mean world x of a label (LPS: larger x is further to the patient's left)."""
    j, i = np.nonzero(labels == value)
    assert i.size, f"label {value} absent from this slice"
    return float(g.index_to_world(i, j)[:, 0].mean())


def test_musclemap_image_geometry() -> None:
    image = read_slice(MUSCLEMAP / "image.nii.gz")
    validate_slice(image)
    g = image.geometry
    assert g.shape == (208, 256)  # rows j, columns i of a 256×208×20 volume
    assert g.spacing[:2] == pytest.approx((0.9375, 0.9375))
    assert g.spacing[2] == pytest.approx(4.4, abs=1e-3)
    assert len(list_slices(MUSCLEMAP / "image.nii.gz")) == 20
    assert image.meta["slice_index"] == 10
    assert "middle" in image.notes[0] and "20 slices" in image.notes[0]
    normal = g.matrix[:, 2]
    tilt = np.degrees(np.arccos(abs(normal[2])))
    assert 8 < tilt < 11
    # i runs toward the patient's left, j toward posterior (axcodes L, P, S)
    assert g.matrix[0, 0] > 0.99 and g.matrix[1, 1] > 0.95


@pytest.mark.parametrize("k", [4, 10, 16])
def test_musclemap_labels_left_and_right(k: int) -> None:
    image = read_slice(MUSCLEMAP / "image.nii.gz", index=k)
    labels = read_labels(MUSCLEMAP / "labels.nii.gz", image.geometry)
    np.testing.assert_array_equal(labels, read_labels(MUSCLEMAP / "labels.nii.gz", index=k))
    g = image.geometry
    # odd values are the patient's right, even values the left: MF 1/2, ES 3/4, psoas 5/6
    for right, left in ((1, 2), (3, 4), (5, 6)):
        assert world_x(labels, g, left) > world_x(labels, g, right)


def test_lpm_fat_float64_and_water() -> None:
    fat = read_slice(LPM / "fat.nii.gz")
    water = read_slice(LPM / "water.nii.gz")
    for image in (fat, water):
        validate_slice(image)
        assert image.data.dtype == np.float32
        assert image.shape == (400, 400)
        assert image.geometry.spacing[:2] == pytest.approx((1.0185, 1.0185), abs=1e-4)
        assert image.meta["slice_index"] == 14 and "29 slices" in image.notes[0]
    assert not np.array_equal(fat.data, np.round(fat.data))  # float64 values survive
    # README: fat origin (204.5, 147.9, 192.8) RAS → LPS, slice 14 is 14 × 4 mm higher
    np.testing.assert_allclose(fat.geometry.origin, (-204.5, -147.9, 192.8 + 56), atol=0.1)


@pytest.mark.parametrize("image_name, labels_name", [
    ("fat.nii.gz", "labels.nii.gz"),
    ("water.nii.gz", "labels_water_header.nii.gz"),
])
def test_lpm_labels_left_and_right(image_name: str, labels_name: str) -> None:
    image = read_slice(LPM / image_name, index=12)
    labels = read_labels(LPM / labels_name, image.geometry)
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    g = image.geometry
    assert world_x(labels, g, 3) > world_x(labels, g, 2)  # left MF vs right MF
    assert world_x(labels, g, 4) > world_x(labels, g, 1)  # left ES vs right ES


def test_lpm_labels_do_not_fit_the_other_header() -> None:
    # the water header lost its origin: the fat-header labels are not on its grid
    water = read_slice(LPM / "water.nii.gz")
    with pytest.raises(InputError, match="origin") as err:
        read_labels(LPM / "labels.nii.gz", water.geometry)
    assert "labels.nii.gz" in str(err.value)
