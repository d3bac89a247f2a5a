"""Training checkpoints: safetensors + JSON only, and a resumed run equals an uninterrupted one.

A tiny setup keeps this fast: 32 x 32 slices (a disc and two ellipses), a width-4 U-Net with
channel dropout (so torch's generator matters as well as numpy's) and batch norm (buffers),
a 2-iteration CRF, 4 U-Net epochs and 2 joint epochs on one thread. Every resumed run is
compared with one uninterrupted run: the same history (``seconds`` aside) and the same weights,
bit for bit, whether it was cancelled (``cancel``), resumed from any epoch's checkpoint,
SIGKILLed in a subprocess or killed in the middle of swapping checkpoint folders.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.labels import MF_L, MF_R, SP
from napari_paraspinal.jobs import Cancel, Progress
from napari_paraspinal.nets.checkpoint import (
    FILES,
    STATE,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from napari_paraspinal.nets.segmenter import Segmenter, SegmenterConfig
from napari_paraspinal.nets.train import CHECKPOINT, train
from napari_paraspinal.nets.train_config import TrainConfig
from napari_paraspinal.nets.train_data import TrainData
from napari_paraspinal.nets.trainer import TrainResult

SIZE = 32


def tiny_data(seed: int = 0) -> tuple[TrainData, TrainData]:
    """6 training and 3 validation slices: a spine disc and left / right ellipses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    images = np.full((9, SIZE, SIZE), 0.3, np.float32)
    labels = np.zeros((9, SIZE, SIZE), np.uint8)
    for i in range(9):
        cy, cx = SIZE / 2 + rng.uniform(-2, 2, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 16
        images[i][disc], labels[i][disc] = 0.9, SP
        for value, side in ((MF_L, 1), (MF_R, -1)):
            ell = ((yy - cy - 7) / 3) ** 2 + ((xx - cx - side * 8) / 4) ** 2 < 1
            images[i][ell], labels[i][ell] = 0.6, value
    images += rng.normal(0, 0.05, images.shape).astype(np.float32)
    return TrainData(images[:6], labels[:6]), TrainData(images[6:], labels[6:])


def tiny_model(seed: int = 0) -> Segmenter:
    torch.manual_seed(seed)
    return Segmenter(SegmenterConfig(unet={"base_width": 4, "dropout": 0.2},
                                     crf={"iterations": 2}))


def tiny_config(**kwargs) -> TrainConfig:
    base = {"epochs_pretrain": 4, "epochs_joint": 2, "batch_size": 4, "lr": 1e-2,
            "patience": 20, "seed": 7, "device": "cpu", "num_threads": 1}
    return TrainConfig(**{**base, **kwargs})


def stop_after(phase: str, epoch: int) -> tuple:
    """A progress / cancel pair that cancels training once ``phase`` ``epoch`` is done."""
    cancel = Cancel()

    def progress(event: Progress) -> None:
        if (event.stage, event.done) == (phase, epoch):
            cancel.set()

    return progress, cancel


def without_seconds(result: TrainResult) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in result.history]


def assert_same_run(result: TrainResult, model: Segmenter, reference) -> None:
    ref_result, ref_state = reference
    got, want = without_seconds(result), without_seconds(ref_result)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for key in g:
            assert g[key] == w[key] or (math.isnan(g[key]) and math.isnan(w[key])), (g, w)
    assert (result.best_epoch, result.stopped_early, result.cancelled) == (
        ref_result.best_epoch, ref_result.stopped_early, False)
    state = model.state_dict()
    assert state.keys() == ref_state.keys()
    assert all(torch.equal(state[k], ref_state[k]) for k in state)


@pytest.fixture(scope="module")
def data() -> tuple[TrainData, TrainData]:
    return tiny_data()


@pytest.fixture(scope="module")
def reference(data) -> tuple[TrainResult, dict]:
    """The uninterrupted run, without checkpoints."""
    model = tiny_model()
    result = train(model, *data, tiny_config())
    assert [(h["phase"], h["epoch"]) for h in result.history] == (
        [("unet", e) for e in range(1, 5)] + [("joint", e) for e in range(3)])
    return result, {k: v.clone() for k, v in model.state_dict().items()}


def test_files_are_safetensors_and_json_only(data, reference, tmp_path) -> None:
    model = tiny_model()
    result = train(model, *data, tiny_config(), checkpoint_dir=tmp_path)
    assert_same_run(result, model, reference)  # checkpointing changes nothing
    folder = tmp_path / CHECKPOINT
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]  # no .tmp / .old left
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    for path in folder.iterdir():
        assert not path.read_bytes().startswith(b"\x80")  # no pickle protocol header
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as fh:
                assert fh.keys() or path.name == "rng.safetensors"
    with safe_open(str(folder / "optimizer.safetensors"), framework="pt") as fh:
        keys = set(fh.keys())
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"} <= keys
    state = json.loads((folder / STATE).read_text())
    assert state["trainer"]["phase"] == "joint" and state["trainer"]["epoch"] == 2
    assert state["trainer"]["phase_done"] and state["optimizer"]["param_groups"][0]["lr"] == 1e-2
    # a finished run resumes to the same result without training again
    calls = []
    again = tiny_model(1)
    result = train(again, *data, tiny_config(), progress=calls.append, checkpoint_dir=tmp_path,
                   resume=True)
    assert not calls
    assert_same_run(result, again, reference)
    with pytest.raises(FileExistsError, match="resume=True"):
        train(tiny_model(), *data, tiny_config(), checkpoint_dir=tmp_path)


@pytest.mark.parametrize("phase, epoch", [("unet", 2), ("joint", 1)])
def test_cancel_and_resume(data, reference, tmp_path, phase: str, epoch: int) -> None:
    progress, cancel = stop_after(phase, epoch)
    first = train(tiny_model(), *data, tiny_config(), progress, cancel,
                  checkpoint_dir=tmp_path)
    assert first.cancelled
    saved = load_checkpoint(tmp_path / CHECKPOINT).trainer_state
    assert (saved["phase"], saved["epoch"]) == (phase, epoch)
    seen = []
    model = tiny_model(seed=1)  # other initial weights: the checkpoint's must replace them
    result = train(model, *data, tiny_config(), progress=seen.append, checkpoint_dir=tmp_path,
                   resume=True)
    assert_same_run(result, model, reference)
    assert len(seen) == len(result.history) - len(first.history)  # only the new epochs


def test_resume_from_every_epoch(data, reference, tmp_path) -> None:
    """Each checkpoint of a run, copied aside when the next epoch is recorded, resumes to it."""
    folder = tmp_path / "run" / CHECKPOINT
    copies = []

    def progress(event: Progress) -> None:
        if folder.exists():  # the next entry's checkpoint is saved after this call
            copies.append(tmp_path / str(len(copies)) / CHECKPOINT)
            shutil.copytree(folder, copies[-1])

    train(tiny_model(), *data, tiny_config(), progress, checkpoint_dir=tmp_path / "run")
    points = [(c["phase"], c["epoch"], c["phase_done"])
              for c in (load_checkpoint(p).trainer_state for p in copies)]
    assert points == [("unet", e, e == 4) for e in range(1, 5)] + [("joint", 0, False),
                                                                   ("joint", 1, False)]
    for copy in copies:
        model = tiny_model(seed=3)
        result = train(model, *data, tiny_config(), checkpoint_dir=copy.parent, resume=True)
        assert_same_run(result, model, reference)


def test_resume_without_checkpoint_starts_afresh(data, reference, tmp_path) -> None:
    model = tiny_model()
    result = train(model, *data, tiny_config(), checkpoint_dir=tmp_path / "new", resume=True)
    assert_same_run(result, model, reference)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(tiny_model(), *data, tiny_config(), resume=True)


KILLED_RUN = """
import sys, time
sys.path.insert(0, {tests!r})
from test_checkpoint import tiny_config, tiny_data, tiny_model
from napari_paraspinal.nets.train import train
train(tiny_model(), *tiny_data(), tiny_config(), progress=lambda event: time.sleep(0.3),
      checkpoint_dir=sys.argv[1])
"""


def saved_epoch(folder: Path) -> tuple[str, int] | None:
    try:
        state = json.loads((folder / STATE).read_text())["trainer"]
    except (OSError, ValueError, KeyError):
        return None  # not written yet, or being swapped
    return state["phase"], state["epoch"]


def test_resume_after_sigkill(data, reference, tmp_path) -> None:
    script = textwrap.dedent(KILLED_RUN).format(tests=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while (saved_epoch(tmp_path / CHECKPOINT) or ("unet", 0))[1] < 1:
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline, "no checkpoint within 60 s"
            time.sleep(0.01)
        proc.kill()  # SIGKILL: no cleanup of any kind
    finally:
        proc.kill()
        proc.communicate()
    assert find_checkpoint(tmp_path / CHECKPOINT) is not None
    killed_at = load_checkpoint(tmp_path / CHECKPOINT).trainer_state
    assert killed_at["epoch"] >= 1 and not (killed_at["phase"] == "joint"
                                            and killed_at["phase_done"])  # killed mid-run
    model = tiny_model(seed=2)
    result = train(model, *data, tiny_config(), checkpoint_dir=tmp_path, resume=True)
    assert_same_run(result, model, reference)


def test_crash_mid_swap_keeps_the_old_checkpoint(data, reference, tmp_path) -> None:
    progress, cancel = stop_after("unet", 2)
    train(tiny_model(), *data, tiny_config(), progress, cancel, checkpoint_dir=tmp_path)
    folder = tmp_path / CHECKPOINT
    # killed between "rename checkpoint to checkpoint.old" and "rename checkpoint.tmp in"
    folder.rename(tmp_path / f"{CHECKPOINT}.old")
    (tmp_path / f"{CHECKPOINT}.tmp").mkdir()
    (tmp_path / f"{CHECKPOINT}.tmp" / "model.safetensors").write_bytes(b"half a file")
    assert find_checkpoint(folder) == tmp_path / f"{CHECKPOINT}.old"
    model = tiny_model()
    result = train(model, *data, tiny_config(), checkpoint_dir=tmp_path, resume=True)
    assert_same_run(result, model, reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT]


def test_refuses_other_settings_and_corrupt_files(data, tmp_path) -> None:
    progress, cancel = stop_after("unet", 1)
    train(tiny_model(), *data, tiny_config(), progress, cancel, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"training configuration \(lr: 0.01 .* 0.02 now"):
        train(tiny_model(), *data, tiny_config(lr=2e-2), checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="another network"):
        train(Segmenter(SegmenterConfig(unet={"base_width": 4}, crf={"iterations": 2})), *data,
              tiny_config(), checkpoint_dir=tmp_path, resume=True)
    other = TrainData(data[0].images[::-1], data[0].labels[::-1])
    with pytest.raises(ValueError, match="data"):
        train(tiny_model(), other, data[1], tiny_config(), checkpoint_dir=tmp_path, resume=True)
    state = tmp_path / CHECKPOINT / STATE
    text = state.read_text()
    state.write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match="corrupt checkpoint"):
        train(tiny_model(), *data, tiny_config(), checkpoint_dir=tmp_path, resume=True)
    payload = json.loads(text)
    del payload["trainer"]["numpy_rng"]
    state.write_text(json.dumps(payload))
    with pytest.raises(InputError, match="numpy_rng"):
        train(tiny_model(), *data, tiny_config(), checkpoint_dir=tmp_path, resume=True)
    state.write_text(text)
    (tmp_path / CHECKPOINT / "best.safetensors").write_bytes(b"\x80\x04garbage")
    with pytest.raises(InputError, match="best.safetensors"):
        load_checkpoint(tmp_path / CHECKPOINT)


def test_save_never_replaces_a_foreign_folder(tmp_path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.txt").write_text("keep me")
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    with pytest.raises(FileExistsError, match="not a checkpoint"):
        save_checkpoint(tmp_path / "results", {}, optimizer, {}, {})
    assert (tmp_path / "results" / "notes.txt").read_text() == "keep me"
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none")


def test_cli_train_refuses_an_old_checkpoint_and_resumes_it(tmp_path, capsys) -> None:
    from napari_paraspinal.cli import main
    from napari_paraspinal.core.labels import NUM_CLASSES
    from napari_paraspinal.nets.samples import AtlasSamples

    train_data, val_data = tiny_data()
    cache = tmp_path / "cache"
    for name, d in (("train", train_data), ("val", val_data)):
        AtlasSamples(d.images, d.labels, np.ones((len(d), NUM_CLASSES), bool),
                     [f"{name}{i}" for i in range(len(d))]).save(cache / f"{name}.npz")
    args = ["train", "--cache", str(cache), "--checkpoint", str(tmp_path / "ckpt"),
            "--width", "4", "--epochs", "2", "--joint-epochs", "0", "--batch-size", "4",
            "--device", "cpu", "--quiet"]
    assert main([*args[:-1], "--out", str(tmp_path / "m1")]) == 0
    err = capsys.readouterr().err  # cli_train prints each epoch
    assert "unet epoch 1: loss " in err and "unet epoch 2: loss " in err
    assert (tmp_path / "m1" / "weights.safetensors").is_file()
    # the same checkpoint folder without --resume: refused, nothing written
    assert main([*args, "--out", str(tmp_path / "m2")]) == 2
    assert "--resume" in capsys.readouterr().err and not (tmp_path / "m2").exists()
    # with --resume the finished run is taken over: same weights, no new epoch
    assert main([*args, "--out", str(tmp_path / "m3"), "--resume"]) == 0
    one = (tmp_path / "m1" / "weights.safetensors").read_bytes()
    assert one == (tmp_path / "m3" / "weights.safetensors").read_bytes()
    # another learning rate: refused with the difference named
    assert main([*args, "--out", str(tmp_path / "m4"), "--resume", "--lr", "0.01"]) == 2
    assert "lr" in capsys.readouterr().err
