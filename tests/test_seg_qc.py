"""Segmentation QC flags what a reader would: a missing muscle, swapped sides, a muscle in
pieces, gross asymmetry, low confidence; a correct segmentation passes."""

import numpy as np

from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, NUM_CLASSES, swap_left_right
from napari_paraspinal.phantom import PhantomConfig, generate_phantom
from napari_paraspinal.preprocess.atlas_space import one_hot
from napari_paraspinal.seg_qc import segmentation_qc


def case():
    c = generate_phantom(31, PhantomConfig(level="L4-L5"))
    return c.labels, c.image.geometry


def test_true_labels_pass() -> None:
    labels, g = case()
    assert segmentation_qc(labels, one_hot(labels, NUM_CLASSES), g) == []


def test_flags() -> None:
    labels, g = case()
    swapped = swap_left_right(labels)
    assert "MF left and right swapped" in segmentation_qc(swapped, one_hot(swapped, 9), g)
    missing = np.where(labels == MF_L, 0, labels)
    assert "MF_L not found" in segmentation_qc(missing, one_hot(missing, 9), g)
    pieces = labels.copy()
    rows, cols = np.nonzero(labels == ES_R)
    pieces[rows[cols < np.median(cols)], cols[cols < np.median(cols)]] = 0
    pieces[rows[cols < np.median(cols)] - 0, cols[cols < np.median(cols)] - 60] = ES_R
    assert "ES_R in pieces" in segmentation_qc(pieces, one_hot(pieces, 9), g)
    small = np.where((labels == ES_L) & (np.arange(labels.shape[1]) % 3 > 0), 0, labels)
    assert any(r.startswith("ES asymmetry") for r in segmentation_qc(small, one_hot(small, 9),
                                                                        g))
    unsure = np.full((9, *labels.shape), 1 / 9, np.float32)
    assert any(r.startswith("low confidence") for r in segmentation_qc(labels, unsure, g))
    assert (labels == MF_R).any() and (labels == ES_R).any()
