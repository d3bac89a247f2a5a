"""Model bundles: safetensors + JSON card, hash-checked, never overwritten, never unpickled."""

import hashlib

import pytest
import torch

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.nets.bundle import CARD, WEIGHTS, ModelCard, load_bundle, save_bundle


def make_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"conv.weight": torch.randn(4, 1, 3, 3, generator=g), "conv.bias": torch.zeros(4)}


def test_round_trip(tmp_path) -> None:
    card = ModelCard(name="demo", network={"unet": {"base_width": 16}}, metrics={"dice": 0.9})
    save_bundle(tmp_path / "m1", make_state(), card)
    state, loaded = load_bundle(tmp_path / "m1")
    for key, value in make_state().items():
        assert torch.equal(state[key], value)
    assert loaded.network == {"unet": {"base_width": 16}} and loaded.metrics == {"dice": 0.9}
    assert [lab["short"] for lab in loaded.labels][:2] == ["SP", "DI"]
    assert len(loaded.weights_sha256) == 64 and loaded.files_sha256 == {}
    assert sorted(p.name for p in (tmp_path / "m1").iterdir()) == [CARD, WEIGHTS]
    assert [p.name for p in tmp_path.iterdir()] == ["m1"]  # no temporary folder left


def test_existing_bundle_is_never_overwritten(tmp_path) -> None:
    save_bundle(tmp_path / "m1", make_state(), ModelCard(name="a"))
    with pytest.raises(FileExistsError):
        save_bundle(tmp_path / "m1", make_state(), ModelCard(name="b"))
    assert load_bundle(tmp_path / "m1")[1].name == "a"


def test_tampered_weights_are_refused(tmp_path) -> None:
    save_bundle(tmp_path / "m1", make_state(), ModelCard(name="a"))
    weights = tmp_path / "m1" / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256"):
        load_bundle(tmp_path / "m1")


def test_a_pickle_is_not_a_bundle(tmp_path) -> None:
    bundle = tmp_path / "evil"
    bundle.mkdir()
    torch.save(make_state(), bundle / "weights.pt")
    pickled = (bundle / "weights.pt").read_bytes()
    digest = hashlib.sha256(pickled).hexdigest()
    (bundle / CARD).write_text(ModelCard(name="evil", weights_sha256=digest).to_json())
    with pytest.raises(InputError, match="weights.safetensors is missing"):
        load_bundle(bundle)
    (bundle / WEIGHTS).write_bytes(pickled)  # the card's hash matches: only the format fails
    with pytest.raises(InputError, match="cannot read the weights"):
        load_bundle(bundle)


def test_missing_or_broken_card(tmp_path) -> None:
    with pytest.raises(InputError, match="card.json is missing"):
        load_bundle(tmp_path)
    (tmp_path / CARD).write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_bundle(tmp_path)
