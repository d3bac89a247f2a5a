"""Train a segmenter on atlas-space samples and write it as a model bundle.

The bundle holds the weights (safetensors), the atlases the samples were registered to, and
a card with the architecture, the preprocessing, the training data and configuration, the
training history and the validation Dice per label, so a model can be rebuilt, trusted and
compared without running any code from the bundle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.labels import BY_VALUE, NUM_CLASSES
from ..preprocess.chain import PreprocessConfig
from .bundle import ModelCard, save_bundle
from .dataset import AtlasSamples
from .metrics import dice_per_label
from .segmenter import Segmenter, SegmenterConfig
from .train import TrainConfig, TrainData, TrainResult, train


def evaluate_samples(model: Segmenter, samples: AtlasSamples, batch_size: int = 8,
                     device: str = "cpu") -> dict[str, float]:
    """Dice per label (short names) and their mean, pooled over the samples, in atlas space."""
    probs = model.predict_proba(samples.images, batch_size=batch_size, device=device)
    pred = probs.argmax(1)
    dice = dice_per_label(pred, samples.labels)
    out = {BY_VALUE[k].short: float(v) for k, v in dice.items()}
    out["mean"] = float(np.nanmean(list(dice.values())))
    return out


def fit_bundle(out: str | os.PathLike[str], train_set: AtlasSamples, val_set: AtlasSamples,
               atlas_dir: str | os.PathLike[str], name: str,
               segmenter: SegmenterConfig | None = None, config: TrainConfig | None = None,
               preprocess: PreprocessConfig | None = None, parent: str | None = None,
               data_note: dict[str, Any] | None = None,
               progress: Callable[[dict[str, Any]], None] | None = None,
               should_stop: Callable[[], bool] | None = None,
               initial_state: dict[str, torch.Tensor] | None = None
               ) -> tuple[Path, TrainResult]:
    """Train, evaluate on ``val_set`` and write the bundle to ``out`` (refused if it exists)."""
    segmenter = segmenter or SegmenterConfig()
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    model = Segmenter(segmenter)
    if initial_state is not None:
        model.load_state_dict(initial_state)
    start = time.perf_counter()
    result = train(model, TrainData(train_set.images, train_set.labels, train_set.label_mask),
                   TrainData(val_set.images, val_set.labels, val_set.label_mask), config,
                   progress=progress, should_stop=should_stop)
    seconds = time.perf_counter() - start
    metrics = {"val_dice": evaluate_samples(model, val_set), "val_cases": len(val_set),
               "best_epoch": result.best_epoch, "train_seconds": round(seconds, 1),
               "cancelled": result.cancelled}
    card = ModelCard(
        name=name,
        network=model.to_dict(),
        preprocessing={**(preprocess or PreprocessConfig()).to_dict(), "atlases": "atlases/",
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
    path = save_bundle(out, {k: v.cpu() for k, v in model.state_dict().items()}, card,
                       extra_files={"atlases": Path(atlas_dir)})
    return path, result
