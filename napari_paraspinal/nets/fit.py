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
    """Loss (red) and validation Dice (blue) per epoch as a PNG, joint phase shaded."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 50, width - 50, 30, height - 40
    draw.rectangle((left, top, right, bottom), outline="black")
    n = len(history)
    if n:
        def x(i: int) -> float:
            return left + (right - left) * (i + 0.5) / n

        joint = [i for i, e in enumerate(history) if e.get("phase") == "joint"]
        if joint:
            draw.rectangle((x(joint[0]) - 2, top + 1, right - 1, bottom - 1), fill=(235, 235, 235))
        losses = [e["loss"] for e in history]
        finite = [v for v in losses if np.isfinite(v)]
        top_loss = max(finite) if finite else 1.0
        for values, colour, scale in ((losses, (200, 30, 30), top_loss),
                                      ([e["val_dice"] for e in history], (30, 60, 200), 1.0)):
            points = [(x(i), bottom - (bottom - top) * v / scale)
                      for i, v in enumerate(values) if np.isfinite(v)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for p in points:
                draw.ellipse((p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2), fill=colour)
        draw.text((left, 8), f"loss (red, max {top_loss:.2f})   validation Dice (blue, 0-1)   "
                             f"grey: U-Net + CRF", fill="black")
        draw.text((left, bottom + 10), f"epochs 1-{n}", fill="black")
    img.save(path)
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
