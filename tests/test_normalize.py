"""Intensity normalisation: scale-free, robust to hot pixels and to how much fat a body has."""

import json

import numpy as np
import pytest

from napari_paraspinal.core.config import config_from_dict, config_to_dict
from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from napari_paraspinal.phantom import PhantomConfig, generate_phantom
from napari_paraspinal.preprocess import NormalizeConfig, body_mask, normalize

METHODS = [NormalizeConfig(), NormalizeConfig(method="median_iqr", clip_low=-5, clip_high=5)]


def phantom(seed: int = 0, level: str = "L4-L5"):
    return generate_phantom(seed, PhantomConfig(level=level, supersample=1))


@pytest.fixture(scope="module")
def case():
    return phantom(3, "L5-S1")


@pytest.fixture(scope="module")
def mask(case):
    return body_mask(case.image)


@pytest.mark.parametrize("config", METHODS, ids=lambda c: c.method)
def test_invariant_to_global_scale(case, mask, config):
    ref = normalize(case.image, mask, config).data
    for factor in (0.1, 10.0):
        scaled = case.image.with_data(case.image.data * np.float32(factor))
        assert np.max(np.abs(normalize(scaled, mask, config).data - ref)) < 1e-4


def test_invariant_to_global_scale_with_automatic_mask(case):
    ref = normalize(case.image, None).data
    for factor in (0.1, 10.0):
        scaled = case.image.with_data(case.image.data * np.float32(factor))
        assert np.max(np.abs(normalize(scaled, None).data - ref)) < 1e-4


@pytest.mark.parametrize("config", METHODS, ids=lambda c: c.method)
def test_robust_to_hot_pixels(case, mask, config):
    ref = normalize(case.image, mask, config).data
    data = case.image.data.copy()
    rows, cols = np.nonzero(mask)
    pick = np.random.default_rng(0).choice(rows.size, 8, replace=False)
    data[rows[pick], cols[pick]] = 1000.0 * data.max()
    out = normalize(case.image.with_data(data), mask, config).data
    others = np.ones(mask.shape, bool)
    others[rows[pick], cols[pick]] = False
    assert np.max(np.abs(out[others] - ref[others])) < 2e-3
    assert out.max() <= config.clip_high


def test_default_maps_body_percentiles_to_0_and_1(case, mask):
    out = normalize(case.image, mask)
    assert out.data.dtype == np.float32
    assert out.geometry == case.image.geometry and out.source == case.image.source
    assert out.data.min() >= 0.0 and out.data.max() <= 1.0
    lo, hi = np.percentile(out.data[mask], [1.0, 99.0])
    assert lo == pytest.approx(0.0, abs=1e-3) and hi == pytest.approx(1.0, abs=1e-3)


def test_median_iqr(case, mask):
    out = normalize(case.image, mask, NormalizeConfig(method="median_iqr", clip_low=None,
                                                      clip_high=None)).data[mask]
    q1, med, q3 = np.percentile(out, [25, 50, 75])
    assert med == pytest.approx(0.0, abs=1e-5) and q3 - q1 == pytest.approx(1.0, abs=1e-5)


def test_lean_muscle_level_does_not_depend_on_body_fat():
    """Slim and obese phantoms: lean muscle lands at about the same normalised value."""
    levels, fat_mm = [], []
    for seed in range(6):
        c = phantom(seed, ("L4-L5", "L5-S1")[seed % 2])
        out = normalize(c.image, body_mask(c.image)).data
        lean = np.isin(c.labels, (PS_L, PS_R, MF_L, MF_R, ES_L, ES_R)) & (c.fat_fraction < 0.05)
        levels.append(np.median(out[lean]))
        fat_mm.append(c.truth["parameters"]["subcutaneous_fat_mm"])
    assert max(fat_mm) > 2 * min(fat_mm)  # the cases do differ in body fat
    assert np.ptp(levels) < 0.1


def test_config_round_trips_through_json():
    for config in METHODS + [NormalizeConfig(low_percentile=0.5, high_percentile=99.5,
                                             clip_low=None)]:
        text = json.dumps(config_to_dict(config))
        assert config_from_dict(NormalizeConfig, json.loads(text)) == config


@pytest.mark.parametrize("bad", [
    {"method": "zscore"},
    {"low_percentile": 99.0, "high_percentile": 1.0},
    {"high_percentile": 101.0},
    {"low_value": 1.0, "high_value": 1.0},
    {"clip_low": 1.0, "clip_high": 0.0},
])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        NormalizeConfig(**bad)


def test_unknown_key_is_refused():
    with pytest.raises(ValueError, match="unknown"):
        config_from_dict(NormalizeConfig, {"method": "percentile", "gamma": 2})


def test_empty_mask_and_flat_body_raise_input_error(case, mask):
    with pytest.raises(InputError, match="phantom"):
        normalize(case.image, np.zeros_like(mask))
    flat = case.image.with_data(np.where(mask, 5.0, 0.0).astype(np.float32))
    with pytest.raises(InputError, match="no intensity range"):
        normalize(flat, mask)


def test_mask_of_wrong_shape_is_a_programming_error(case):
    with pytest.raises(ValueError, match="shape"):
        normalize(case.image, np.ones((4, 4), bool))
