"""The shipped demo model on fresh phantoms (seeds never used for atlases or training), and
left/right on the patient's side however the slice is stored.

The full evaluation (50 phantoms) is ``paraspinal evaluate``; the figures are in the README.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_orientation_phantom import STORAGES, store, world_x

from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from napari_paraspinal.nets.bundle import load_card
from napari_paraspinal.nets.metrics import mean_dice
from napari_paraspinal.phantom import PhantomConfig, generate_phantom
from napari_paraspinal.segment import default_model_path, load_model, segment_slice

# measured on 50 fresh phantoms: see the README; a margin below the measured mean
MIN_MEAN_DICE = 0.93


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


def test_card_describes_the_shipped_model() -> None:
    card = load_card(default_model_path())
    assert card.name == "paraspinal-phantom-t2w"
    assert card.weights_sha256 and card.metrics["val_dice"]["mean"] > 0
    assert card.training["batch_size"] == 4 and card.training["multi_data"]
    assert card.network["unet"]["norm"] == "instance" and card.network["use_crf"]
    assert (default_model_path() / "atlases" / "L5-S1" / "atlas.json").is_file()


@pytest.mark.slow
def test_fresh_phantoms_are_segmented(model) -> None:
    scores = []
    for k in range(4):
        case = generate_phantom(870_000 + k, PhantomConfig(level=("L4-L5", "L5-S1")[k % 2]))
        scores.append(mean_dice(segment_slice(case.image, model).labels, case.labels))
    assert np.mean(scores) >= MIN_MEAN_DICE, scores


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["RAS", "flip_LR", "transposed"])
def test_left_and_right_follow_the_patient(model, storage) -> None:
    case = generate_phantom(870_100, PhantomConfig(level="L4-L5"))
    data, geom = store(case.image.data, case.image.geometry, *STORAGES[storage])
    seg = segment_slice(case.image.with_data(data, geometry=geom), model, "L4-L5")
    for left, right in ((PS_L, PS_R), (MF_L, MF_R), (ES_L, ES_R)):
        assert world_x(seg.labels, geom, left) > world_x(seg.labels, geom, right), (left, storage)
