"""Synthetic training data: painted anatomy (levels, real outlines, left and right) and the
random-contrast images made from it."""

import numpy as np
import pytest
import torch
from scipy import stats

from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R, SP
from napari_paraspinal.synth.anatomy import SynthTissue
from napari_paraspinal.synth.contrast import PRESETS, synthesize
from napari_paraspinal.synth.real_shapes import (
    MRI515_PIXEL_MM,
    default_shapes_dir,
    load_real_muscles,
    muscles_from_map,
)
from napari_paraspinal.synth.render import render_case, render_pool

SHAPES = default_shapes_dir()


def two_blob_map() -> np.ndarray:
    """An MRI515-style map: image left is patient right (values 50 ES_R, 100 MF_R,
    150 MF_L, 200 ES_L), anterior at the top."""
    m = np.zeros((120, 160), np.uint8)
    m[40:80, 20:60] = 50
    m[50:90, 62:78] = 100
    m[50:90, 82:98] = 150
    m[40:80, 100:140] = 200
    return m


def test_real_map_outlines_are_anchored_and_exact() -> None:
    muscles = muscles_from_map(two_blob_map(), "toy")
    assert muscles is not None
    mf_r = muscles.shapes[MF_R]
    # the anchor: midline between the multifidus, at their anterior edge
    u = (np.arange(160) - 80.0) * MRI515_PIXEL_MM
    v = (np.arange(120) - 50.0) * MRI515_PIXEL_MM
    uu, vv = np.meshgrid(u, v)
    inside = mf_r.contains(uu, vv)
    np.testing.assert_array_equal(inside, two_blob_map() == 100)
    # patient right is at negative u, left positive
    assert muscles.shapes[ES_R].bbox()[1] < 0 < muscles.shapes[ES_L].bbox()[0]
    # growing by 2 mm adds about perimeter × 2 mm
    grown = mf_r.grown(2.0).contains(uu, vv).sum() * MRI515_PIXEL_MM ** 2
    area = inside.sum() * MRI515_PIXEL_MM ** 2
    perimeter = 2 * (16 + 40) * MRI515_PIXEL_MM
    assert grown - area == pytest.approx(perimeter * 2.0, rel=0.2)


def test_render_is_deterministic_and_labels_each_side() -> None:
    a, b = render_case(123), render_case(123)
    np.testing.assert_array_equal(a.tissue, b.tissue)
    np.testing.assert_array_equal(a.labels, b.labels)
    for k in range(12):
        case = render_case(1000 + k)
        cols = np.arange(case.labels.shape[1])
        for left, right in ((MF_L, MF_R), (ES_L, ES_R), (PS_L, PS_R)):
            if (case.labels == left).sum() < 30 or (case.labels == right).sum() < 30:
                continue  # cut by a narrow field of view
            # frame columns run toward the patient's left
            assert cols[np.nonzero(case.labels == left)[1]].mean() > \
                cols[np.nonzero(case.labels == right)[1]].mean()
        assert (case.labels == SP).any()
        # labelled muscles are muscle or fat inside muscle, never air or bone
        muscle = np.isin(case.labels, (MF_L, MF_R, ES_L, ES_R))
        assert np.isin(case.tissue[muscle], (SynthTissue.MUSCLE, SynthTissue.MUSCLE_FAT)).all()


def test_sizes_follow_the_level() -> None:
    tissue, labels, info = render_pool(60, 5000)
    mf = ((labels == MF_L) | (labels == MF_R)).sum((1, 2))
    es = ((labels == ES_L) | (labels == ES_R)).sum((1, 2))
    ps = ((labels == PS_L) | (labels == PS_R)).sum((1, 2))
    height = info[:, 0]  # 0 = L5-S1 ... 4 = L1-L2
    assert stats.spearmanr(height, mf)[0] < -0.5  # multifidus large low
    assert stats.spearmanr(height, ps)[0] < -0.5  # psoas small high
    assert stats.spearmanr(height, es / np.maximum(mf, 1))[0] > 0.5  # ES dominates high


@pytest.mark.skipif(not SHAPES.is_dir(), reason=f"real label maps not found in {SHAPES}")
def test_real_outlines_load_and_paint() -> None:
    shapes = load_real_muscles(SHAPES)
    assert len(shapes) == 411
    case = render_case(7, shapes[:5])
    for value in (MF_L, MF_R, ES_L, ES_R):
        assert (case.labels == value).sum() > 50


def test_synthesised_images_are_normalised_and_vary() -> None:
    case = render_case(42)
    tissue = torch.from_numpy(case.tissue).long()
    body = case.tissue != SynthTissue.AIR
    gen = torch.Generator().manual_seed(0)
    images = [synthesize(tissue, gen)[0].numpy() for _ in range(6)]
    for img in images:
        assert img.shape == case.tissue.shape and img.min() >= 0 and img.max() <= 1
        assert np.percentile(img[body], 50) > 0
    # the same tissue in different contrasts: muscle brighter than fat in some, darker in others
    muscle, fat = case.tissue == SynthTissue.MUSCLE, case.tissue == SynthTissue.FAT
    signs = {np.sign(img[muscle].mean() - img[fat].mean()) for img in images + [
        synthesize(tissue, torch.Generator().manual_seed(s))[0].numpy() for s in range(1, 9)]}
    assert signs == {-1.0, 1.0}
    again = synthesize(tissue, torch.Generator().manual_seed(0))[0].numpy()
    np.testing.assert_array_equal(again, images[0])


def test_presets_put_fat_where_the_sequence_does() -> None:
    fat, muscle = SynthTissue.FAT, SynthTissue.MUSCLE
    assert PRESETS["T2w"][fat] > PRESETS["T2w"][muscle]
    assert PRESETS["dixon_water"][fat] < PRESETS["dixon_water"][muscle]
    assert PRESETS["stir"][fat] < PRESETS["stir"][muscle]
