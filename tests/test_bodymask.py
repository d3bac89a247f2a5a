"""Body mask: the whole body and no air, on every phantom contrast, with or without bias."""

from dataclasses import replace
from functools import cache

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.phantom import PhantomConfig, generate_phantom
from napari_paraspinal.phantom.contrast import CONTRASTS
from napari_paraspinal.preprocess import body_mask, bodymask

CASES = [(0, "L4-L5"), (1, "L5-S1"), (2, "L4-L5"), (3, "L5-S1")]


def config(level: str, contrast: str, **changes) -> PhantomConfig:
    # On a Dixon fat image muscle sits at the noise floor; where it also reaches the edge of
    # the field of view nothing tells it from air, so that contrast is tested with the body
    # inside the field of view (see the body mask module's notes).
    fov = {"fov_mm": (340.0, 420.0)} if contrast == "dixon_fat" else {}
    return PhantomConfig(level=level, contrast=contrast, supersample=1, **{**fov, **changes})


@cache
def true_body(seed: int, level: str, contrast: str) -> np.ndarray:
    """Every pixel the noise- and bias-free phantom puts any tissue in (anatomy is shared
    by all contrasts of a seed; on T2w no tissue is zero)."""
    clean_config = replace(config(level, contrast), contrast="T2w", noise=(0.0, 0.0),
                           bias_strength=(0.0, 0.0))
    clean = generate_phantom(seed, clean_config)
    return ndi.binary_fill_holes(clean.image.data > 0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b))


@pytest.mark.parametrize("contrast", CONTRASTS)
@pytest.mark.parametrize(("seed", "level"), CASES)
def test_mask_matches_phantom_body(seed, level, contrast):
    case = generate_phantom(seed, config(level, contrast))
    body = true_body(seed, level, contrast)
    mask = body_mask(case.image)
    assert mask.dtype == bool and mask.shape == case.image.shape
    assert dice(mask, body) >= 0.97
    assert not np.any((case.labels > 0) & ~mask), "labelled structures outside the mask"
    assert np.sum(mask & ~body) <= 0.01 * body.sum(), "air around the body in the mask"


@pytest.mark.parametrize("contrast", ["T2w", "dixon_water"])
def test_strong_bias_field(contrast):
    seed, level = 5, "L5-S1"
    case = generate_phantom(seed, config(level, contrast, bias_strength=(0.35, 0.35),
                                         noise=(0.04, 0.04)))
    mask = body_mask(case.image)
    body = true_body(seed, level, contrast)
    assert dice(mask, body) >= 0.97
    assert not np.any((case.labels > 0) & ~mask)


def test_body_filling_the_field_of_view():
    case = generate_phantom(1, config("L5-S1", "T2w"))
    rows, cols = case.image.shape
    crop = (slice(rows // 6, rows - rows // 6), slice(cols // 5, cols - cols // 5))
    data = case.image.data[crop]
    g = case.image.geometry
    image = SliceImage(np.ascontiguousarray(data), Geometry(data.shape, g.spacing), "crop")
    body = true_body(1, "L5-S1", "T2w")[crop]
    assert dice(body_mask(image), body) >= 0.97


@pytest.mark.parametrize("contrast", ["T2w", "dixon_water"])
def test_fine_pixels_are_binned_and_the_mask_still_fits(contrast):
    # 512² at about 0.5 mm: the mask is found on blocks of 2-3 pixels and repeated back
    fine = config("L4-L5", contrast, matrix=(512, 512), fov_mm=(256.0, 256.0))
    case = generate_phantom(7, fine)
    assert min(bodymask._binning(case.image.geometry.spacing[:2])) >= 2
    clean = generate_phantom(7, replace(fine, contrast="T2w", noise=(0.0, 0.0),
                                        bias_strength=(0.0, 0.0)))
    body = ndi.binary_fill_holes(clean.image.data > 0)
    mask = body_mask(case.image)
    assert mask.shape == case.image.shape
    assert dice(mask, body) >= 0.98
    assert not np.any((case.labels > 0) & ~mask), "labelled structures outside the mask"
    assert np.sum(mask & ~body) <= 0.01 * body.sum(), "air around the body in the mask"


def test_binning_keeps_odd_shapes_and_messages():
    jj, ii = np.mgrid[0:301, 0:203]
    inside = ((ii - 101) / 80.0) ** 2 + ((jj - 150) / 120.0) ** 2 <= 1.0
    rng = np.random.default_rng(3)
    data = np.hypot(np.where(inside, 300.0, 0.0) + 6 * rng.standard_normal(inside.shape),
                    6 * rng.standard_normal(inside.shape)).astype(np.float32)
    image = SliceImage(data, Geometry((301, 203), (0.5, 0.5, 5.0)), "odd")
    mask = body_mask(image)
    assert mask.shape == (301, 203)
    assert dice(mask, inside) >= 0.98
    noise = np.hypot(*rng.standard_normal((2, 301, 203))).astype(np.float32)
    with pytest.raises(InputError, match="noise") as info:
        body_mask(SliceImage(noise, Geometry((301, 203), (0.5, 0.5, 5.0)), "fine-noise"))
    assert "fine-noise" in str(info.value)


def test_anisotropic_pixels():
    jj, ii = np.mgrid[0:200, 0:300]
    x, y = (ii - 150) * 0.6, (jj - 100) * 1.4  # mm
    inside = (x / 70.0) ** 2 + (y / 100.0) ** 2 <= 1.0
    rng = np.random.default_rng(1)
    data = np.hypot(np.where(inside, 300.0, 0.0) + 6 * rng.standard_normal(inside.shape),
                    6 * rng.standard_normal(inside.shape)).astype(np.float32)
    image = SliceImage(data, Geometry((200, 300), (0.6, 1.4, 5.0)), "aniso")
    assert dice(body_mask(image), inside) >= 0.98


def _image(data: np.ndarray, source: str) -> SliceImage:
    return SliceImage(data.astype(np.float32), Geometry(data.shape), source)


@pytest.mark.parametrize(("name", "data", "problem"), [
    ("constant", np.full((64, 64), 7.0), "constant"),
    ("zeros", np.zeros((64, 64)), "constant"),
    ("rayleigh-noise", np.hypot(*np.random.default_rng(0).standard_normal((2, 128, 128))),
     "noise"),
    ("uniform-noise", np.random.default_rng(1).uniform(size=(128, 128)), "noise"),
    ("offset-noise", 100 + np.random.default_rng(2).standard_normal((128, 128)), "noise"),
])
def test_no_body_raises_input_error(name, data, problem):
    with pytest.raises(InputError, match=problem) as info:
        body_mask(_image(data, name))
    assert info.value.source == name


def test_tiny_body_raises_input_error():
    jj, ii = np.mgrid[-128:128, -128:128]
    rng = np.random.default_rng(3)
    disc = np.where(ii**2 + jj**2 <= 14**2, 500.0, 0.0)  # 0.9 % of the field of view
    data = np.hypot(disc + 10 * rng.standard_normal(disc.shape),
                    10 * rng.standard_normal(disc.shape))
    with pytest.raises(InputError, match="field of view"):
        body_mask(_image(data, "tiny"))


def test_non_finite_pixels_raise_input_error():
    data = np.ones((32, 32))
    data[3, 4] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        body_mask(_image(data, "nan"))


@pytest.mark.parametrize("spacing", [(1.0185, 1.0185), (0.7, 1.3), (2.2, 0.45)])
def test_small_closings_by_footprint_equal_the_distance_transform_closing(spacing,
                                                                           monkeypatch):
    """A closing with a disc footprint (fast for small radii) gives exactly the closing
    that two Euclidean distance transforms give (used for large radii)."""
    rng = np.random.default_rng(7)
    mask = ndi.binary_opening(rng.random((120, 140)) > 0.55)
    for radius in (2.0, bodymask.CLOSING_MM, 5.5):
        fast = bodymask._close(mask, radius, spacing)
        monkeypatch.setattr(bodymask, "SMALL_DISC_PX", -1)
        exact = bodymask._close(mask, radius, spacing)
        monkeypatch.undo()
        assert not np.array_equal(fast, mask)  # the closing did fill something
        np.testing.assert_array_equal(fast, exact)
