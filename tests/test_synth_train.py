"""Training on synthetic slices: a bundle that loads, and a second leg started from it."""

import json

import pytest
import torch

from napari_paraspinal.nets.bundle import load_bundle
from napari_paraspinal.nets.synth_train import SynthTrainConfig, fit_synthetic_bundle

TINY = SynthTrainConfig(steps=2, batch_size=2, crop=64, pool=4, val=2, workers=1,
                        checkpoint_every=1, val_every=1, device="cpu")


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth") / "first"
    return fit_synthetic_bundle(out, "first", TINY, width=4)


def test_a_trained_bundle_loads_and_records_its_training(first) -> None:
    state, card = load_bundle(first)
    assert card.training["steps"] == 2 and card.training["started_from"] is None
    assert card.training["render"]["real_shapes"] == 0.95
    assert card.data["real_shapes"] == "none: ellipses only"
    assert len(card.training["history"]) == 2
    assert all(torch.isfinite(v).all() for v in state.values())


def test_a_second_leg_starts_from_the_first_and_says_so(first, tmp_path) -> None:
    second = fit_synthetic_bundle(tmp_path / "second", "second",
                                  SynthTrainConfig(**{**TINY.__dict__, "lr": 1e-4, "seed": 3}),
                                  width=4, init=first)
    state0, _ = load_bundle(first)
    state1, card = load_bundle(second)
    assert card.training["started_from"]["name"] == "first"
    assert card.training["started_from"]["training"]["steps"] == 2
    assert json.loads(json.dumps(card.training))["lr"] == 1e-4
    # trained further: close to the first leg's weights, not equal, not a fresh start
    key = next(k for k in state0 if k.endswith("weight") and state0[k].ndim == 4)
    diff = (state1[key] - state0[key]).abs().max().item()
    assert 0 < diff < 0.05


def test_a_second_leg_of_another_network_is_refused(first, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="size mismatch"):
        fit_synthetic_bundle(tmp_path / "wider", "wider", TINY, width=8, init=first)
