"""The typed configs: frozen, and one serializer (core.config) carries each through JSON."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import napari_paraspinal
from napari_paraspinal.core.config import config_from_dict, config_to_dict
from napari_paraspinal.preprocess.chain import CARD_ONLY, PreprocessConfig, preprocess_from_card
from napari_paraspinal.preprocess.n4 import N4Config
from napari_paraspinal.preprocess.registration_config import RegistrationConfig


def _config_classes() -> list[type]:
    """Every dataclass named ``*Config`` in the headless package (GUI modules left out)."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(napari_paraspinal.__path__, "napari_paraspinal."):
        if "._napari" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (name.endswith("Config") and isinstance(obj, type)
                    and dataclasses.is_dataclass(obj) and obj.__module__ == info.name):
                found[f"{info.name}.{name}"] = obj
    return [found[k] for k in sorted(found)]


CONFIGS = _config_classes()


def test_the_search_finds_the_configs_the_cards_store() -> None:
    names = {c.__name__ for c in CONFIGS}
    assert {"PreprocessConfig", "N4Config", "NormalizeConfig", "RegistrationConfig",
            "UNetConfig", "SegmenterConfig", "CRFConfig", "FatConfig", "TrainConfig",
            "FinetuneConfig", "PhantomConfig", "RunConfig"} <= names


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_is_frozen(cls: type) -> None:
    assert cls.__dataclass_params__.frozen, f"{cls.__module__}.{cls.__name__} is not frozen"


def _default(cls: type) -> object | None:
    try:
        return cls()
    except TypeError:  # needs arguments (RunConfig's output folder): not a stored config
        return None


@pytest.mark.parametrize("cls", [c for c in CONFIGS if _default(c) is not None],
                         ids=lambda c: c.__name__)
def test_every_default_config_survives_json(cls: type) -> None:
    config = cls()
    text = json.dumps(config_to_dict(config))
    assert config_from_dict(cls, json.loads(text)) == config


def test_nested_configs_and_none_round_trip() -> None:
    config = PreprocessConfig(n4=None, frame="body",
                              registration=RegistrationConfig(rotation_starts_deg=(0.0, 5.0)))
    d = json.loads(json.dumps(config_to_dict(config)))
    assert d["n4"] is None and d["registration"]["rotation_starts_deg"] == [0.0, 5.0]
    back = config_from_dict(PreprocessConfig, d)
    assert back == config
    assert isinstance(back.registration, RegistrationConfig)
    assert back.registration.rotation_starts_deg == (0.0, 5.0)
    with_n4 = config_from_dict(PreprocessConfig, {"n4": {"shrink": 2}})
    assert with_n4.n4 == N4Config(shrink=2) and with_n4.frame == "atlas"


def test_unknown_keys_are_refused_at_any_depth() -> None:
    with pytest.raises(ValueError, match="unknown N4Config keys: \\['levels'\\]"):
        config_from_dict(PreprocessConfig, {"n4": {"levels": 3}})
    with pytest.raises(ValueError, match="unknown PreprocessConfig keys"):
        config_from_dict(PreprocessConfig, {"atlas": "x"})
    with pytest.raises(ValueError, match="must be a JSON object"):
        config_from_dict(PreprocessConfig, {"normalize": [1, 2]})


def test_the_shipped_cards_load_through_the_serializer() -> None:
    """The preprocessing stored in every shipped model card reads back and writes every stored
    value again (keys a card predates take their defaults)."""
    models = Path(napari_paraspinal.__file__).resolve().parents[1] / "models"
    cards = sorted(models.glob("*/card.json"))
    assert cards, f"no model cards under {models}"
    for path in cards:
        stored = json.loads(path.read_text())["preprocessing"]
        own = {k: v for k, v in stored.items() if k not in CARD_ONLY}
        again = config_to_dict(preprocess_from_card(stored))
        assert _within(own, again), path


def _within(stored: object, written: object) -> bool:
    """True when every key and value of ``stored`` is in ``written`` (recursively)."""
    if isinstance(stored, dict):
        return isinstance(written, dict) and all(
            k in written and _within(v, written[k]) for k, v in stored.items())
    return stored == written


def test_a_frozen_config_cannot_be_changed_in_place() -> None:
    config = N4Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.shrink = 8  # type: ignore[misc]
    assert dataclasses.replace(config, shrink=8).shrink == 8 and config.shrink != 8
