"""The ablation (U-Net / +CRF / +CRF and multi-data): same start, same split, paired tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from test_train import FAST_CRF, synthetic

from napari_paraspinal.cli import main
from napari_paraspinal.core.labels import NUM_CLASSES
from napari_paraspinal.jobs import Progress
from napari_paraspinal.nets.ablate import (
    VARIANTS,
    AblationConfig,
    paired_tests,
    run_ablation,
    write_report,
)
from napari_paraspinal.nets.samples import AtlasSamples
from napari_paraspinal.nets.segmenter import SegmenterConfig
from napari_paraspinal.nets.train_config import TrainConfig
from napari_paraspinal.nets.trainer import history_entry


def samples(n: int, seed: int) -> AtlasSamples:
    data = synthetic(n, seed)
    return AtlasSamples(data.images, data.labels, np.ones((n, NUM_CLASSES), bool),
                        [f"synthetic:seed={seed}:{i}" for i in range(n)])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ablation() -> tuple:
    config = AblationConfig(
        segmenter=SegmenterConfig(unet={"base_width": 4}, crf=FAST_CRF),
        train=TrainConfig(epochs_pretrain=4, epochs_joint=1, batch_size=4, lr=1e-2,
                          patience=10, device="cpu", seed=3))
    events: list[Progress] = []
    result = run_ablation(samples(8, 0), samples(3, 1), samples(5, 2), config,
                          progress=events.append)
    return result, events


@pytest.fixture(scope="module")
def result(ablation):
    return ablation[0]


def test_progress_names_the_variant_of_each_epoch(ablation) -> None:
    result, events = ablation
    assert [e.case for e in events] == [name for name, h in result.histories.items()
                                        for _ in h]
    for name, history in result.histories.items():
        mine = [e for e in events if e.case == name]
        assert [history_entry(e) for e in mine] == history
        assert all(e.message.startswith(f"{name}: {e.stage} epoch {e.done}: ") for e in mine)


def test_variants_share_start_split_and_test_cases(result) -> None:
    assert list(result.histories) == list(VARIANTS)
    unet = list(result.histories["U-Net"])
    crf_phase1 = [e for e in result.histories["U-Net+CRF"] if e["phase"] == "unet"]
    # same initial weights, data and seed: the U-Net phases of the first two are identical
    assert [(e["loss"], e["val_dice"]) for e in unet] == [
        (e["loss"], e["val_dice"]) for e in crf_phase1]
    assert any(e["phase"] == "joint" for e in result.histories["U-Net+CRF"])
    assert not any(e["phase"] == "joint" for e in unet)
    multi = result.histories["U-Net+CRF+multi-data"]
    assert multi[0]["samples"] == 2 * unet[0]["samples"]  # gradient images doubled the data
    assert len(result.cases) == 3 * 5
    assert {c["variant"] for c in result.cases} == set(VARIANTS)
    for c in result.cases:
        assert 0.0 <= c["mean"] <= 1.0


def test_paired_tests_match_scipy(result) -> None:
    by = {name: np.array([c["mean"] for c in result.cases if c["variant"] == name])
          for name in VARIANTS}
    row = next(t for t in result.tests
               if t["comparison"] == "U-Net+CRF vs U-Net" and t["label"] == "mean")
    t, p = stats.ttest_rel(by["U-Net+CRF"], by["U-Net"])
    assert row["t"] == pytest.approx(t) and row["p"] == pytest.approx(p)
    assert row["mean_difference"] == pytest.approx(float(np.mean(by["U-Net+CRF"] - by["U-Net"])))
    comparisons = {t["comparison"] for t in result.tests}
    assert comparisons == {"U-Net+CRF vs U-Net", "U-Net+CRF+multi-data vs U-Net+CRF",
                           "U-Net+CRF+multi-data vs U-Net"}


def test_paired_tests_find_a_real_difference() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 0.9, (30, 8))
    better = base + 0.02 + rng.normal(0, 0.005, base.shape)
    rows = paired_tests({"U-Net": base, "U-Net+CRF": better})
    mean = next(r for r in rows if r["label"] == "mean")
    assert mean["p"] < 1e-6 and mean["mean_difference"] == pytest.approx(0.02, abs=0.003)
    same = paired_tests({"U-Net": base, "U-Net+CRF": base.copy()})
    assert all(np.isnan(r["p"]) for r in same)  # no differences: no test, not p = 0


def test_report_files(result, tmp_path) -> None:
    paths = write_report(result, tmp_path, note="tiny synthetic run")
    text = paths["report"].read_text()
    for name in VARIANTS:
        assert name in text
    assert "tiny synthetic run" in text and "| mean |" in text
    assert paths["cases"].read_text().count("\n") == 1 + 15


def test_cli_ablate_from_cached_samples(tmp_path, capsys) -> None:
    cache = tmp_path / "cache"
    for name, (n, seed) in {"train": (6, 0), "val": (2, 1), "test": (3, 2)}.items():
        samples(n, seed).save(cache / f"{name}.npz")
    code = main(["ablate", "--cache", str(cache), "--out", str(tmp_path / "out"),
                 "--width", "4", "--epochs", "1", "--joint-epochs", "1", "--batch-size", "4",
                 "--device", "cpu"])
    assert code == 0
    err = capsys.readouterr().err  # cli_train prints each variant's epochs
    assert "U-Net: unet epoch 1: loss " in err and "U-Net+CRF: joint epoch 1: " in err
    text = (tmp_path / "out" / "ablation.md").read_text()
    assert "3 test slices" in text and "U-Net+CRF+multi-data" in text


def test_config_refuses_unknown_variants() -> None:
    with pytest.raises(ValueError, match="variants"):
        AblationConfig(variants=("U-Net", "U-Net+dropout"))
