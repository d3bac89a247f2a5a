"""Each muscle kept as its largest piece; the pixels of dropped islands take their next most
probable class."""

import numpy as np

from napari_paraspinal.core.labels import ES_L, MF_L, NUM_CLASSES
from napari_paraspinal.postprocess import largest_components


def test_islands_go_to_the_next_class() -> None:
    probs = np.zeros((NUM_CLASSES, 40, 40), np.float32)
    probs[0] = 0.5
    probs[MF_L, 5:20, 5:20] = 0.9  # the muscle
    probs[MF_L, 30:33, 30:33] = 0.9  # an island of it, elsewhere
    probs[ES_L, 30:33, 30:33] = 0.7  # where the next guess is ES
    probs[MF_L, 35:37, 5:7] = 0.9  # an island over background
    labels = largest_components(probs)
    assert (labels == MF_L).sum() == 15 * 15
    assert (labels[30:33, 30:33] == ES_L).all()
    assert (labels[35:37, 5:7] == 0).all()
    # a map with one piece per muscle is unchanged
    np.testing.assert_array_equal(largest_components(probs, labels), labels)
