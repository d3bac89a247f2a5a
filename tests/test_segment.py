"""Segmentation with a model bundle: native-grid labels, the main job, evaluation, bad bundles.

A tiny bundle is trained here for one epoch (width 8): these tests check the plumbing and
geometry, not accuracy (the shipped model's accuracy is in test_shipped_model.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _helpers_torch import torch_threads
from napari_paraspinal.models import MODELS_DIR
from openpyxl import load_workbook

from napari_paraspinal.cli import main
from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.io import read_labels, read_slice
from napari_paraspinal.evaluate import evaluate_folder, score_case, summarise
from napari_paraspinal.jobs import Progress
from napari_paraspinal.nets.dataset import phantom_samples
from napari_paraspinal.nets.fit import fit_bundle
from napari_paraspinal.nets.segmenter import SegmenterConfig
from napari_paraspinal.nets.train_config import TrainConfig
from napari_paraspinal.phantom import write_dataset
from napari_paraspinal.preprocess.chain import default_atlases
from napari_paraspinal.segment import load_model, segment_slice


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    atlases = default_atlases()
    samples = phantom_samples(4, 850_000, atlases)
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    with torch_threads(1):
        path, _ = fit_bundle(out, samples.subset([0, 1, 2]), samples.subset([3]),
                             MODELS_DIR / "atlases", "tiny",
                             SegmenterConfig(unet={"base_width": 8}),
                             TrainConfig(epochs_pretrain=1, epochs_joint=1, batch_size=4,
                                         seed=3))
    return path


def test_bundle_card_says_what_the_model_is(tiny_bundle) -> None:
    card = json.loads((tiny_bundle / "card.json").read_text())
    assert card["network"]["unet"]["base_width"] == 8
    assert card["network"]["use_crf"] is (card["metrics"]["best_phase"] == "joint")
    assert card["metrics"]["use_crf"] is card["network"]["use_crf"]
    assert card["training"]["batch_size"] == 4 and card["training"]["lr"] == 1e-3
    assert card["data"]["train_cases"] == 3 and "mean" in card["metrics"]["val_dice"]
    assert {"n4", "normalize", "registration"} <= set(card["preprocessing"])
    assert (tiny_bundle / "atlases" / "L4-L5" / "atlas.json").is_file()
    log = (tiny_bundle / "training_log.csv").read_text().splitlines()
    assert log[0].startswith("phase,epoch,loss,val_dice") and len(log) == 1 + len(
        card["training"]["history"])
    from PIL import Image

    assert Image.open(tiny_bundle / "training_curve.png").size == (640, 360)


def test_labels_land_on_the_native_grid(tiny_bundle, phantom) -> None:
    model = load_model(tiny_bundle, device="cpu")
    case = phantom(850100, level='L5-S1', matrix=(320, 320))
    seg = segment_slice(case.image, model)
    assert seg.labels.shape == case.image.shape and seg.labels.dtype == np.uint8
    np.testing.assert_allclose(seg.probabilities.sum(0), 1.0, atol=1e-4)
    assert seg.labels.max() < 9
    assert {"network", "to_native", "register", "total"} <= set(seg.seconds)


def test_run_segments_measures_and_records_the_model(tiny_bundle, tmp_path, capsys) -> None:
    data = tmp_path / "data"
    write_dataset(data, n=2, seed=850_200, level="both")
    out = tmp_path / "out"
    assert main(["run", str(data / "images"), "--model", str(tiny_bundle), "--out", str(out),
                 "--quiet"]) == 0
    for stem in ("phantom_L4L5_s850200", "phantom_L5S1_s850201"):
        image = read_slice(data / "images" / f"{stem}.nii.gz")
        labels = read_labels(out / "labels" / f"{stem}.nii.gz", image.geometry)
        assert labels.shape == image.shape
        assert (out / "overlays" / f"{stem}.png").is_file()
    ws = load_workbook(out / "measurements.xlsx")["measurements"]
    header = [c.value for c in ws[1]]
    first = dict(zip(header, [c.value for c in ws[2]], strict=True))
    assert first["label_source"].startswith("model tiny")
    assert first["level"] in ("L4-L5", "L5-S1")
    assert isinstance(first["seconds"], float)


def test_evaluation_scores_each_label_in_mm(tiny_bundle, tmp_path) -> None:
    data = tmp_path / "data"
    write_dataset(data, n=1, seed=850_300, level="L4-L5")
    events: list[Progress] = []
    rows = evaluate_folder(data, load_model(tiny_bundle, device="cpu"), progress=events.append)
    assert [(e.stage, e.done, e.total) for e in events] == [("evaluate", 1, 1)]
    assert {r["label"] for r in rows} == {"SP", "DI", "PS_L", "PS_R", "MF_L", "MF_R", "ES_L",
                                         "ES_R"}
    for r in rows:
        assert 0.0 <= r["dice"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
    table = summarise(rows)
    assert table[-1]["label"] == "all" and table[-1]["n"] == 8


def test_perfect_prediction_scores_perfectly(phantom) -> None:
    case = phantom(850400)
    rows = score_case(case.labels, case.labels, case.image.geometry)
    assert len(rows) == 8
    for r in rows:
        assert r["dice"] == 1.0 and r["assd_mm"] == 0.0 and r["hd95_mm"] == 0.0


def test_broken_bundles_are_refused_by_name(tiny_bundle, tmp_path) -> None:
    with pytest.raises(InputError, match="no model bundle"):
        load_model(tmp_path / "nothing")
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_bundle, bad)
    with open(bad / "weights.safetensors", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(InputError, match="SHA-256"):
        load_model(bad)


def test_segment_and_evaluate_commands(tiny_bundle, tmp_path, capsys) -> None:
    data = tmp_path / "data"
    write_dataset(data, n=1, seed=850_500, level="L5-S1")
    out = tmp_path / "seg"
    assert main(["segment", str(data / "images"), "--model", str(tiny_bundle), "--out",
                 str(out), "--uncertainty", "--level", "L5-S1"]) == 0
    stem = "phantom_L5S1_s850500"
    image = read_slice(data / "images" / f"{stem}.nii.gz")
    assert read_labels(out / f"{stem}_labels.nii.gz", image.geometry).shape == image.shape
    unc = read_slice(out / f"{stem}_uncertainty.nii.gz")
    assert unc.geometry.same_grid(image.geometry)
    assert 0.0 <= unc.data.min() and unc.data.max() < 1.0
    assert main(["evaluate", str(data), "--model", str(tiny_bundle), "--out",
                 str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    assert "| all |" in text and "dice" in text
    assert (tmp_path / "ev" / "evaluation_summary.csv").is_file()


def test_train_command_writes_a_loadable_bundle(tmp_path, capsys) -> None:
    out = tmp_path / "m"
    assert main(["train", "--phantoms", "2", "--val", "1", "--epochs", "1", "--joint-epochs",
                 "0", "--batch-size", "2", "--no-crf", "--out", str(out), "--quiet"]) == 0
    assert "model written to" in capsys.readouterr().out
    model = load_model(out, device="cpu")
    assert model.segmenter.crf is None and model.card.data["train_cases"] == 2
    # a bundle is never overwritten
    assert main(["train", "--phantoms", "2", "--val", "1", "--epochs", "1", "--out",
                 str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
