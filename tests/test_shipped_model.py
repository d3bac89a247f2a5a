"""The shipped models: the default (synthetic training then the labelled real slices, body
frame) on fresh phantoms and, saying which real cases it saw, on the real cases; the
synthetic-only model on a real scan it never saw; left/right on the patient's side however
a slice is stored; and the paper's atlas + CRF model still selectable.

The full evaluations are ``paraspinal evaluate`` (phantoms) and ``paraspinal bench real``
(real scans); the figures are in the README.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari_paraspinal.models import MODELS_DIR
from test_orientation_phantom import STORAGES, store, world_x

from napari_paraspinal.bench_real import DiceTally
from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from napari_paraspinal.nets.bundle import load_card
from napari_paraspinal.nets.metrics import mean_dice
from napari_paraspinal.realdata import read_series_slice, real_series
from napari_paraspinal.segment import default_model_path, load_model, segment_slice

# margins below the figures measured in the README (50 phantoms; every real slice)
MIN_PHANTOM_DICE = 0.90
MIN_REAL_DICE = 0.6
PAPER_MODEL = MODELS_DIR / "paraspinal-phantom-t2w"
SYNTH_ONLY = MODELS_DIR / "paraspinal-synth"
REAL_SERIES = {"lpm_tum01/water", "lpm_tum01/fat", "lpm_tum01/inphase",
               "musclemap_sub0001/fat"}


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


def test_card_describes_the_shipped_model() -> None:
    card = load_card(default_model_path())
    assert card.name == "paraspinal-synth-real"
    assert card.weights_sha256 and card.preprocessing["frame"] == "body"
    assert card.preprocessing["postprocess"] == "largest_component"
    assert card.network["unet"]["norm"] == "instance" and not card.network["use_crf"]
    # every slice of every labelled real series, named, so no benchmark calls them unseen
    assert card.data["real_images_used"] == {"lpm_tum01/water": 29, "lpm_tum01/fat": 29,
                                             "lpm_tum01/inphase": 29,
                                             "musclemap_sub0001/fat": 20}
    assert card.training["started_from"]["name"] == "paraspinal-synth"
    assert card.training["real_share"] == 0.25
    assert "mri515_t2_labels" in card.data["real_shapes"]


def test_the_synthetic_only_model_is_still_shipped() -> None:
    card = load_card(SYNTH_ONLY)
    assert card.name == "paraspinal-synth" and card.data["real_images_used"] == "none"


def test_the_papers_model_is_still_shipped() -> None:
    card = load_card(PAPER_MODEL)
    assert card.name == "paraspinal-phantom-t2w" and card.network["use_crf"]
    assert card.preprocessing.get("frame", "atlas") == "atlas"
    assert (PAPER_MODEL / "atlases" / "L5-S1" / "atlas.json").is_file()


@pytest.mark.slow
def test_fresh_phantoms_are_segmented(model, phantom) -> None:
    scores = []
    for k in range(4):
        case = phantom(870000 + k, level=('L4-L5', 'L5-S1')[k % 2])
        scores.append(mean_dice(segment_slice(case.image, model).labels, case.labels))
    assert np.mean(scores) >= MIN_PHANTOM_DICE, scores


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["RAS", "flip_LR", "transposed"])
def test_left_and_right_follow_the_patient(model, storage, phantom) -> None:
    case = phantom(870100, level='L4-L5')
    data, geom = store(case.image.data, case.image.geometry, *STORAGES[storage])
    seg = segment_slice(case.image.with_data(data, geometry=geom), model, "L4-L5")
    for left, right in ((PS_L, PS_R), (MF_L, MF_R), (ES_L, ES_R)):
        assert world_x(seg.labels, geom, left) > world_x(seg.labels, geom, right), (left, storage)


SERIES = {s.name: s for s in real_series()}


@pytest.mark.slow
@pytest.mark.skipif("musclemap_sub0001/fat" not in SERIES,
                    reason="real cases not found in shared/data beside the repository")
def test_a_real_scan_never_seen() -> None:
    model = load_model(SYNTH_ONLY, device="cpu")  # trained on no real image
    series = SERIES["musclemap_sub0001/fat"]
    tally = DiceTally((MF_L, MF_R, ES_L, ES_R))
    for k in (5, 10, 15):
        image, truth = read_series_slice(series, k)
        labels = segment_slice(image, model).labels
        tally.add(labels, truth)
        for left, right in ((MF_L, MF_R), (ES_L, ES_R)):
            assert world_x(labels, image.geometry, left) > world_x(labels, image.geometry,
                                                                     right)
    assert np.mean(list(tally.pooled().values())) >= MIN_REAL_DICE


@pytest.mark.skipif(not REAL_SERIES <= set(SERIES),
                    reason="real cases not found in shared/data beside the repository")
def test_the_shipped_model_is_never_scored_as_unseen_on_what_it_saw() -> None:
    from napari_paraspinal.bench_real import bench_real

    rows = bench_real(None, slices="every14", device="cpu",
                      series=[SERIES["musclemap_sub0001/fat"], SERIES["lpm_tum01/water"]])
    assert [r["seen_in_training"] for r in rows] == [True, True]
