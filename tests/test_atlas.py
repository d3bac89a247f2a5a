"""Atlas building, saving and loading; the shipped atlases' contents."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_paraspinal import __version__
from napari_paraspinal.core.config import config_from_dict
from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.labels import NUM_CLASSES
from napari_paraspinal.phantom import PhantomConfig, generate_phantom
from napari_paraspinal.preprocess import body_mask, n4_correct, normalize
from napari_paraspinal.preprocess.atlas import Atlas, load_atlases
from napari_paraspinal.preprocess.atlas_build import AtlasCase, build_atlas
from napari_paraspinal.preprocess.chain import default_atlases
from napari_paraspinal.preprocess.registration_config import RegistrationConfig


def _case(seed: int, level: str) -> AtlasCase:
    case = generate_phantom(seed, PhantomConfig(level=level))
    mask = body_mask(case.image)
    return AtlasCase(normalize(n4_correct(case.image, mask).corrected, mask), mask, case.labels)


@pytest.fixture(scope="module")
def small_atlas() -> Atlas:
    return build_atlas([_case(830_000 + k, "L4-L5") for k in range(4)], "L4-L5", rounds=1)


def test_built_atlas_is_a_distribution_centred_on_the_structures(small_atlas) -> None:
    a = small_atlas
    assert a.image.shape == (256, 256) and a.wide_image.shape == (256, 256)
    assert a.probabilities.shape == (NUM_CLASSES, 256, 256)
    np.testing.assert_allclose(a.probabilities.sum(0), 1.0, atol=1e-4)
    assert a.probabilities.min() >= 0.0
    # every labelled structure is present, and together they sit at the atlas centre
    for c in range(1, NUM_CLASSES):
        assert a.probabilities[c].max() > 0.5, c
    ys, xs = np.nonzero(a.probabilities[1:].sum(0) > 0.5)
    assert abs(xs.mean() - 127.5) < 6 and abs(ys.mean() - 127.5) < 6
    # the patient's left structures lie at larger x (columns toward the patient's left)
    def cx(c):
        return np.nonzero(a.probabilities[c] > 0.5)[1].mean()
    assert cx(5) > cx(6) and cx(7) > cx(8) and cx(3) > cx(4)
    assert a.meta["cases"] == 4


def test_save_and_load_round_trip(small_atlas, tmp_path) -> None:
    small_atlas.save(tmp_path / "L4-L5")
    loaded = load_atlases(tmp_path)["L4-L5"]
    for name in ("image", "probabilities", "wide_image", "wide_body"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(small_atlas, name))
    card = json.loads((tmp_path / "L4-L5" / "atlas.json").read_text())
    assert card["level"] == "L4-L5" and card["cases"] == 4
    # a rebuild can repeat the registration that built it
    assert config_from_dict(RegistrationConfig, card["registration"]).rotation_starts_deg == (0.0,)
    assert card["software"]["napari-paraspinal"] == __version__  # as in a model card


def test_missing_or_broken_atlas_is_named(tmp_path) -> None:
    with pytest.raises(InputError, match="no atlas"):
        load_atlases(tmp_path)
    with pytest.raises(InputError, match="atlas.json"):
        Atlas.load(tmp_path)


def test_needs_two_cases() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        build_atlas([_case(830_010, "L5-S1")], "L5-S1")


def test_shipped_atlases_cover_both_levels() -> None:
    atlases = default_atlases()
    assert set(atlases) == {"L4-L5", "L5-S1"}
    for level, a in atlases.items():
        assert a.level == level and a.meta["cases"] >= 10
        np.testing.assert_allclose(a.probabilities.sum(0), 1.0, atol=1e-4)
        assert (a.wide_body > 0.5).sum() > 5000  # the whole body outline, at 2 mm
