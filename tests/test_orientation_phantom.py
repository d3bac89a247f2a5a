"""Patient left/right comes from the direction matrix: the same phantom stored four ways
(RAS, flipped left-right, flipped anterior-posterior, transposed) always has its left psoas
on the patient's left after a write and read through the real file formats."""

import numpy as np
import pytest

from napari_paraspinal.core.geometry import Geometry
from napari_paraspinal.core.io import read_labels, read_slice
from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from napari_paraspinal.core.orientation import to_canonical
from napari_paraspinal.core.writers import write_image, write_labels

# (rows/cols transposed?, flip rows?, flip cols?) applied to the canonical array, and the
# direction that keeps every pixel at its true world position
STORAGES = {
    "LPS": (False, False, False),
    "RAS": (False, True, True),
    "flip_LR": (False, False, True),
    "flip_AP": (False, True, False),
    "transposed": (True, False, False),
}


def store(array: np.ndarray, g: Geometry, transpose: bool, flip_rows: bool, flip_cols: bool
          ) -> tuple[np.ndarray, Geometry]:
    """Re-store a canonical slice in another array layout without moving it in the world."""
    rows, cols = g.shape
    col_axis, row_axis = g.matrix[:, 0].copy(), g.matrix[:, 1].copy()
    sc, sr = g.spacing[0], g.spacing[1]
    first_col = cols - 1 if flip_cols else 0
    first_row = rows - 1 if flip_rows else 0
    origin = g.index_to_world(first_col, first_row)
    out = array[::-1] if flip_rows else array
    out = out[:, ::-1] if flip_cols else out
    if flip_cols:
        col_axis = -col_axis
    if flip_rows:
        row_axis = -row_axis
    if transpose:
        out = out.T
        col_axis, row_axis, sc, sr = row_axis, col_axis, sr, sc
    normal = np.cross(col_axis, row_axis)
    m = np.stack([col_axis, row_axis, normal], axis=1)
    geom = Geometry(shape=out.shape, spacing=(sc, sr, g.spacing[2]), origin=tuple(origin),
                    direction=tuple(m.ravel()))
    return np.ascontiguousarray(out), geom


def world_x(labels: np.ndarray, g: Geometry, value: int) -> float:
    """Mean world x (LPS: + is patient left) of a label."""
    j, i = np.nonzero(labels == value)
    return float(g.index_to_world(i, j)[:, 0].mean())


@pytest.mark.parametrize("level", ["L4-L5", "L5-S1"])
@pytest.mark.parametrize("storage", list(STORAGES))
def test_left_is_patient_left_however_stored(tmp_path, storage: str, level: str, phantom) -> None:
    case = phantom(11, level=level)
    g = case.image.geometry
    img, geom = store(case.image.data, g, *STORAGES[storage])
    lab, _ = store(case.labels, g, *STORAGES[storage])
    write_image(case.image.with_data(img, geometry=geom), tmp_path / "image.nii.gz")
    write_labels(lab, geom, tmp_path / "labels.nii.gz")

    image = read_slice(tmp_path / "image.nii.gz")
    labels = read_labels(tmp_path / "labels.nii.gz", image.geometry)
    for left, right in ((PS_L, PS_R), (MF_L, MF_R), (ES_L, ES_R)):
        assert world_x(labels, image.geometry, left) > world_x(labels, image.geometry, right)

    canon, r = to_canonical(image)
    canon_labels = r.apply(labels)
    np.testing.assert_array_equal(canon_labels, case.labels)
    np.testing.assert_allclose(canon.data, case.image.data, rtol=1e-6)
    assert canon.geometry.same_grid(g)
