"""The body frame: a slice placed by its body alone, patient left kept, geometry exact."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from test_orientation_phantom import STORAGES, store

from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R
from napari_paraspinal.preprocess.atlas_space import labels_to_atlas, to_atlas
from napari_paraspinal.preprocess.bodymask import body_mask
from napari_paraspinal.preprocess.frame import FRAME_BACK_MM, body_anchor, body_frame


def test_anchor_of_a_rectangle_with_arms() -> None:
    mask = np.zeros((200, 300), bool)
    mask[40:150, 100:200] = True  # body: posterior edge after row 149
    mask[60:190, 10:30] = True  # an arm reaching further back, outside the band
    mask[60:190, 270:290] = True
    x, y = body_anchor(mask, (0.5, 2.0))
    assert y == pytest.approx((149 + 0.5) * 2.0)  # pixel centres at j × spacing
    assert x == pytest.approx(mask.sum(0) @ np.arange(300) / mask.sum() * 0.5)


@pytest.mark.parametrize("storage", list(STORAGES))
def test_frame_is_the_same_however_the_slice_is_stored(storage: str, phantom) -> None:
    case = phantom(21, level='L4-L5')
    g = case.image.geometry
    mapping = body_frame(case.image, body_mask(case.image))
    ref_img, ref_lab = to_atlas(case.image, mapping), labels_to_atlas(case.labels, mapping)

    data, geom = store(case.image.data, g, *STORAGES[storage])
    labels, _ = store(case.labels, g, *STORAGES[storage])
    image = case.image.with_data(data, geometry=geom)
    other = body_frame(image, body_mask(image))
    np.testing.assert_allclose(to_atlas(image, other), ref_img, atol=1e-3 * ref_img.max())
    np.testing.assert_array_equal(labels_to_atlas(labels, other), ref_lab)
    cols = np.arange(ref_lab.shape[1])
    for left, right in ((MF_L, MF_R), (ES_L, ES_R)):
        assert cols[np.nonzero(ref_lab == left)[1]].mean() > \
            cols[np.nonzero(ref_lab == right)[1]].mean()


def test_frame_puts_the_back_at_its_place_and_keeps_millimetres(phantom) -> None:
    case = phantom(5, level='L5-S1', spacing_mm=(0.6, 0.6))
    mask = body_mask(case.image)
    mapping = body_frame(case.image, mask)
    framed = labels_to_atlas(mask.astype(np.uint8), mapping)
    rows = np.nonzero(framed.any(1))[0]
    back_row = (framed.shape[0] - 1) / 2 + FRAME_BACK_MM  # frame pixels are 1 mm
    assert abs(rows.max() + 0.5 - back_row) <= 1.5
    # areas in mm² survive the frame (1 mm² pixels there)
    native = (case.labels == MF_L).sum() * case.image.geometry.pixel_area_mm2
    assert (labels_to_atlas(case.labels, mapping) == MF_L).sum() == pytest.approx(native, rel=0.05)


def test_noise_behind_the_back_does_not_move_the_anchor(phantom) -> None:
    case = phantom(8, level='L4-L5')
    image = case.image
    mapping = body_frame(image, body_mask(image))
    # 40 mm of streaky noise in the air behind the back, as real Dixon scans show: the body
    # mask takes it in (its posterior edge moves back by tens of mm), the anchor does not
    data = image.data.copy()
    back = np.nonzero(body_mask(image).any(1))[0].max()
    band = np.abs(np.random.default_rng(0).normal(0, 1, (40, data.shape[1])))
    band = ndi.gaussian_filter(band, (0.7, 6))
    data[back + 2:back + 42] += 0.15 * np.percentile(image.data, 99) * band / band.mean()
    noisy = image.with_data(data.astype(np.float32))
    spacing = image.geometry.spacing[:2]
    assert body_anchor(body_mask(noisy), spacing)[1] - body_anchor(body_mask(image),
                                                                   spacing)[1] > 20
    shifted = body_frame(noisy, body_mask(noisy))
    dy = shifted.transform.GetTranslation()[1] - mapping.transform.GetTranslation()[1]
    assert abs(dy) < 2.0
