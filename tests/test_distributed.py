"""Training under ``torchrun``: two CPU processes (gloo) sharing every batch give the model one
process gives, to rounding error, and only the first process writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from napari_paraspinal.models import MODELS_DIR

from napari_paraspinal.core.config import config_from_dict
from napari_paraspinal.core.writers import write_image
from napari_paraspinal.nets.bundle import load_bundle
from napari_paraspinal.nets.distributed import Group
from napari_paraspinal.nets.segmenter import Segmenter, SegmenterConfig
from napari_paraspinal.phantom import LEVELS
from napari_paraspinal.project import Project
from napari_paraspinal.project.finetune_bench import shifted_case

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


def test_a_batch_is_split_into_contiguous_parts_that_cover_it() -> None:
    for n in range(0, 11):
        for size in (1, 2, 3, 4):
            parts = [Group(r, size).part(n) for r in range(size)]
            covered = [i for p in parts for i in range(p.start, p.stop)]
            assert covered == list(range(n))
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start
                                                              for p in parts) <= 1


def _train(out: Path, cache: Path, nproc: int) -> subprocess.CompletedProcess:
    args = ["train", "--out", str(out), "--cache", str(cache), "--phantoms", "6", "--val", "2",
            "--width", "4", "--norm", "instance", "--epochs", "2", "--joint-epochs", "1",
            "--batch-size", "4", "--patience", "5", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", "napari_paraspinal", *args]
    else:
        cmd = [TORCHRUN, "--standalone", "--nproc_per_node", str(nproc), "-m",
               "napari_paraspinal", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed with torch")
def test_two_processes_train_the_model_one_process_trains(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    one = _train(tmp_path / "one", cache, 1)
    assert one.returncode == 0, one.stderr
    two = _train(tmp_path / "two", cache, 2)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("model written to") == 1  # only the first process says so
    state1, card1 = load_bundle(tmp_path / "one")
    state2, card2 = load_bundle(tmp_path / "two")
    assert state1.keys() == state2.keys()
    # where training started (fit_bundle seeds torch with the training seed, then builds)
    torch.manual_seed(card1.training["seed"])
    start = Segmenter(config_from_dict(SegmenterConfig, card1.network)).state_dict()
    keys = [k for k in state1 if k.startswith("unet.")]
    moved = sum(float(((state1[k] - start[k]) ** 2).sum()) for k in keys) ** 0.5
    apart = sum(float(((state1[k] - state2[k]) ** 2).sum()) for k in keys) ** 0.5
    # the same path to rounding error (Adam divides by tiny gradients, which magnifies it)
    assert moved > 0.1 and apart < 0.01 * moved, (apart, moved)
    h1 = [e["loss"] for e in card1.training["history"] if e["epoch"] > 0]
    h2 = [e["loss"] for e in card2.training["history"] if e["epoch"] > 0]
    assert len(h1) == len(h2) == 3
    assert h1 == pytest.approx(h2, rel=1e-3)
    assert card1.metrics["best_epoch"] == card2.metrics["best_epoch"]


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed with torch")
def test_synthetic_training_runs_on_two_processes_and_one_writes(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "synth"
    done = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "napari_paraspinal",
         "train-synth", "--out", str(out), "--steps", "3", "--pool", "4", "--batch-size", "4",
         "--width", "4", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("model written to") == 1
    state, card = load_bundle(out)
    assert card.training["steps"] == 3 and card.training["history"][-1]["step"] == 3
    assert all(torch.isfinite(v).all() for v in state.values())


@pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed with torch")
def test_two_processes_fine_tune_a_project_as_one_process_does(tmp_path: Path) -> None:
    first = tmp_path / "one"
    project = Project.init(first)
    project.register_model(MODELS_DIR / "paraspinal-phantom-t2w", active=True)
    for k in range(6):  # Dixon-water phantoms, corrected: a domain the paper's model misses
        case = shifted_case("dixon_water", 640_000 + k, LEVELS[k % 2])
        path = write_image(case.image, tmp_path / f"w{k}.nii.gz")
        (cid,) = project.add([path], level=LEVELS[k % 2]).ids
        project.save_labels(cid, case.labels, "corrected")
    project.close()
    shutil.copytree(first, tmp_path / "two")
    args = ["finetune", "--epochs", "2", "--joint-epochs", "0", "--replay", "2", "--holdout",
            "0.34", "--device", "cpu", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "napari_paraspinal", *args, str(first)],
                         capture_output=True, text=True, env=env, timeout=900)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m",
                          "napari_paraspinal", *args, str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=900)
    assert two.returncode == 0, two.stderr
    assert len(two.stdout.strip().splitlines()) == 1  # one process reports
    (_, new1) = Project.open(first).models()
    (_, new2) = Project.open(tmp_path / "two").models()
    assert new1.active == new2.active  # the same decision
    state1, card1 = load_bundle(new1.path)
    state2, card2 = load_bundle(new2.path)
    assert card1.metrics["heldout_dice"] == pytest.approx(card2.metrics["heldout_dice"],
                                                          abs=0.01)
    diff = max(float((state1[k] - state2[k]).abs().max()) for k in state1)
    moved = max(float((state1[k] - load_bundle(MODELS_DIR / "paraspinal-phantom-t2w")[0][k])
                      .abs().max()) for k in state1)
    assert diff < 0.05 * moved, (diff, moved)
