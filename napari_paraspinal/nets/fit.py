"""Train a segmenter on atlas-space samples and write it as a model bundle.

The bundle holds the weights (safetensors), the atlases the samples were registered to, and
a card with the architecture, the preprocessing, the training data and configuration, the
training history and the validation Dice per label, so a model can be rebuilt, trusted and
compared without running any code from the bundle.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.config import config_to_dict
from ..core.labels import BY_VALUE, NUM_CLASSES
from ..jobs import Cancel, ProgressFn
from ..preprocess.chain import PreprocessConfig
from .bundle import ModelCard, save_bundle
from .distributed import group_from_env
from .metrics import dice_per_label
from .samples import AtlasSamples
from .segmenter import Segmenter, SegmenterConfig, resolve_device
from .train import train
from .train_config import TrainConfig
from .train_data import TrainData
from .trainer import TrainResult


def evaluate_samples(model: Segmenter, samples: AtlasSamples, batch_size: int = 8,
                     device: str = "cpu") -> dict[str, float]:
    """Dice per label (short names) and their mean, pooled over the samples, in atlas space."""
    probs = model.predict_proba(samples.images, batch_size=batch_size, device=device)
    pred = probs.argmax(1)
    dice = dice_per_label(pred, samples.labels)
    out = {BY_VALUE[k].short: float(v) for k, v in dice.items()}
    out["mean"] = float(np.nanmean(list(dice.values())))
    return out


def history_csv(history: list[dict[str, Any]], path: Path) -> Path:
    """The training log, one row per epoch, as CSV."""
    from ..export import write_csv

    return write_csv(history, path)


def curve_picture(history: list[dict[str, Any]], path: Path, width: int = 640,
                  height: int = 360) -> Path:
    """Loss (red, left axis) and validation Dice (blue, right axis, 0–1) per epoch as a PNG,
    the joint U-Net + CRF phase shaded (matplotlib, the product's plotting library)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    loss_ax = figure.add_subplot()
    dice_ax = loss_ax.twinx()
    epochs = np.arange(1, len(history) + 1)
    joint = [k + 1 for k, e in enumerate(history) if e.get("phase") == "joint"]
    if joint:
        loss_ax.axvspan(joint[0] - 0.5, len(history) + 0.5, color="0.92",
                        label="U-Net + CRF")
    for ax, key, colour in ((loss_ax, "loss", "#c81e1e"), (dice_ax, "val_dice", "#1e3cc8")):
        values = np.array([float(e[key]) for e in history], dtype=float)
        keep = np.isfinite(values)
        ax.plot(epochs[keep], values[keep], color=colour, marker="o", markersize=3)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss", color="#c81e1e")
    dice_ax.set_ylabel("validation Dice", color="#1e3cc8")
    dice_ax.set_ylim(0.0, 1.0)
    if len(history):
        loss_ax.set_xlim(0.5, len(history) + 0.5)
    figure.savefig(path)
    return path


def fit_bundle(out: str | os.PathLike[str], train_set: AtlasSamples, val_set: AtlasSamples,
               atlas_dir: str | os.PathLike[str], name: str,
               segmenter: SegmenterConfig | None = None, config: TrainConfig | None = None,
               preprocess: PreprocessConfig | None = None, parent: str | None = None,
               data_note: dict[str, Any] | None = None,
               progress: ProgressFn | None = None,
               cancel: Cancel | None = None,
               initial_state: dict[str, torch.Tensor] | None = None,
               checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False
               ) -> tuple[Path, TrainResult]:
    """Train, evaluate on ``val_set`` and write the bundle to ``out`` (refused if it exists).

    ``progress``, ``cancel``, ``checkpoint_dir`` and ``resume`` are :func:`.train.train`'s:
    a killed run goes on.
    Under ``torchrun`` every process trains its part (:mod:`.distributed`) and the first
    writes the bundle.
    """
    segmenter = segmenter or SegmenterConfig()
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    model = Segmenter(segmenter)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    start = time.perf_counter()
    result = train(model, TrainData(train_set.images, train_set.labels, train_set.label_mask),
                   TrainData(val_set.images, val_set.labels, val_set.label_mask), config,
                   progress=progress,
                   cancel=cancel, checkpoint_dir=checkpoint_dir,
                   resume=resume)
    seconds = time.perf_counter() - start
    if not group_from_env(resolve_device(config.device)).main:
        return Path(out), result  # under torchrun only the first process writes the bundle
    # train() drops the CRF when the U-Net alone scored best, so model.to_dict() (the card's
    # network) says how the model runs; the metrics say which phase won and why
    metrics = {"val_dice": evaluate_samples(model, val_set), "val_cases": len(val_set),
               "best_epoch": result.best_epoch, "best_phase": result.winner,
               "use_crf": result.use_crf, "selection": result.why,
               "train_seconds": round(seconds, 1), "cancelled": result.cancelled}
    card = ModelCard(
        name=name,
        network=model.to_dict(),
        preprocessing={**config_to_dict(preprocess or PreprocessConfig()), "atlases": "atlases/",
                       "space": "256x256 at 1 mm, x to the patient's left, y posterior"},
        training={**asdict(config), "history": result.history,
                  "device": str(next(model.parameters()).device)},
        data={"train_cases": len(train_set), "val_cases": len(val_set),
              "train_sources": sorted({s.split(":seed=")[0] for s in train_set.sources}),
              "partial_labels": int((~train_set.label_mask.all(1)).sum()),
              "classes": NUM_CLASSES, **(data_note or {})},
        metrics=metrics,
        parent=parent,
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = history_csv(result.history, Path(tmp) / "training_log.csv")
        curve = curve_picture(result.history, Path(tmp) / "training_curve.png")
        path = save_bundle(out, {k: v.cpu() for k, v in model.state_dict().items()}, card,
                           extra_files={"atlases": Path(atlas_dir), log.name: log,
                                        curve.name: curve})
    return path, result
