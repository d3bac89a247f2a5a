"""Geometry and orientation: every pixel keeps its world position through reorientation."""

import numpy as np
import pytest

from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.core.orientation import (
    Reorientation,
    axis_codes,
    canonical_reorientation,
    to_canonical,
)


def rotation_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


# direction matrices (columns: i, j, normal) for the ways a scanner stores an axial slice
DIRECTIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "flip_LR": np.diag([-1.0, 1.0, -1.0]),
    "flip_AP": np.diag([1.0, -1.0, -1.0]),
    "transposed": np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, -1.0]]),
    "transposed_RA": np.array([[0, -1.0, 0], [-1.0, 0, 0], [0, 0, -1.0]]),
    "rotated_20": rotation_z(20),
    "tilted_10": np.array([[1, 0, 0], [0, np.cos(0.17), -np.sin(0.17)],
                           [0, np.sin(0.17), np.cos(0.17)]]),
}


def make_slice(direction: np.ndarray, shape=(5, 7), spacing=(0.7, 1.1, 4.0)) -> SliceImage:
    g = Geometry(shape=shape, spacing=spacing, origin=(-12.5, 30.0, 101.0),
                 direction=tuple(direction.ravel()))
    data = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape) + 1
    return SliceImage(data=data, geometry=g)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_canonical_keeps_world_positions(name: str) -> None:
    image = make_slice(DIRECTIONS[name])
    canon, r = to_canonical(image)
    # every value sits at the same world position before and after
    before = {float(v): p for v, p in zip(image.data.ravel(),
                                          image.geometry.world_grid().reshape(-1, 3), strict=True)}
    after = canon.geometry.world_grid().reshape(-1, 3)
    for v, p in zip(canon.data.ravel(), after, strict=True):
        np.testing.assert_allclose(p, before[float(v)], atol=1e-9)
    # and columns now run toward patient left (+x), rows toward posterior (+y)
    m = canon.geometry.matrix
    assert m[0, 0] > 0.5 and m[1, 1] > 0.5
    np.testing.assert_array_equal(r.undo(canon.data), image.data)


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_pixel_area_survives(name: str) -> None:
    image = make_slice(DIRECTIONS[name])
    canon, _ = to_canonical(image)
    assert canon.geometry.pixel_area_mm2 == pytest.approx(0.7 * 1.1)


def test_axis_codes() -> None:
    assert axis_codes(make_slice(DIRECTIONS["LPS"]).geometry) == "LP"
    assert axis_codes(make_slice(DIRECTIONS["RAS"]).geometry) == "RA"
    assert axis_codes(make_slice(DIRECTIONS["transposed"]).geometry) == "PL"


def test_reorientation_undo_with_channels() -> None:
    r = Reorientation(transpose=True, flip_rows=True, flip_cols=False)
    probs = np.random.default_rng(0).random((9, 4, 6))
    assert r.apply(probs).shape == (9, 6, 4)
    np.testing.assert_array_equal(r.undo(r.apply(probs)), probs)


def test_identity_is_canonical() -> None:
    assert canonical_reorientation(make_slice(np.eye(3)).geometry).is_identity


def test_sitk_round_trip_keeps_geometry() -> None:
    image = make_slice(DIRECTIONS["rotated_20"])
    back = Geometry.from_sitk(image.to_sitk())
    assert back.same_grid(image.geometry)
    assert Geometry.from_dict(image.geometry.to_dict()) == image.geometry


def test_slice_image_checks_shape() -> None:
    with pytest.raises(ValueError, match="does not match"):
        SliceImage(np.zeros((3, 3), np.float32), Geometry(shape=(3, 4)))


def test_atomic_write_leaves_ordinary_permissions(tmp_path) -> None:
    import os

    from napari_paraspinal.core.atomic import write_text_atomic

    umask = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
