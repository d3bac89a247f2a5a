"""Validation of a fine-tuning candidate (:mod:`.finetune`): held-out Dice and the decision.

Active model and candidate are scored the same way on the held-out cases, on each case's
native grid (:func:`score_heldout`); :func:`decide` promotes only a candidate that beats the
active model and, when asked, did not forget the original training data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core.labels import BY_VALUE
from ..nets.metrics import dice_per_label
from ..preprocess.atlas_space import AtlasMapping, probabilities_to_native
from .finetune_config import FinetuneConfig


@dataclass
class Score:
    """Held-out Dice of one model: mean over cases, per label, and per case."""

    mean: float
    per_label: dict[str, float] = field(default_factory=dict)
    per_case: dict[str, float] = field(default_factory=dict)


def score_heldout(segmenter: Any, atlas_images: np.ndarray, mappings: Sequence[AtlasMapping],
                  truths: Sequence[np.ndarray], vouched: Sequence[Sequence[int]],
                  case_ids: Sequence[str], device: torch.device | str = "cpu") -> Score:
    """Native-grid Dice of a segmenter on held-out cases (see the module doc).

    Per case, the mean Dice over its vouched labels (labels absent from both maps skipped);
    the score is the mean over cases; per label, the mean over the cases that vouch for it.
    """
    probs = segmenter.predict_proba(atlas_images, batch_size=4, device=device)
    per_case: dict[str, float] = {}
    per_label: dict[int, list[float]] = {}
    for cid, p, mapping, truth, labels in zip(case_ids, probs, mappings, truths, vouched,
                                               strict=True):
        pred = probabilities_to_native(p, mapping).argmax(0)
        dice = dice_per_label(pred, truth, sorted(labels))
        values = [v for v in dice.values() if not np.isnan(v)]
        per_case[cid] = float(np.mean(values)) if values else float("nan")
        for value, d in dice.items():
            if not np.isnan(d):
                per_label.setdefault(value, []).append(d)
    finite = [v for v in per_case.values() if not np.isnan(v)]
    return Score(float(np.mean(finite)) if finite else float("nan"),
                 {BY_VALUE[k].short: float(np.mean(v)) for k, v in sorted(per_label.items())},
                 per_case)


def decide(before: float, after: float, replay_before: float | None,
           replay_after: float | None, config: FinetuneConfig) -> tuple[bool, str]:
    """Promote only a candidate better on the held-out cases that did not forget too much."""
    if not np.isfinite(after) or not after > before + config.min_improvement:
        return False, (f"held-out Dice {after:.4f} does not beat the active model's "
                       f"{before:.4f} by more than {config.min_improvement}")
    if (config.max_forgetting is not None and replay_before is not None
            and replay_after is not None and replay_after < replay_before - config.max_forgetting):
        return False, (f"forgets the original data: Dice {replay_after:.4f} there, "
                       f"{replay_before:.4f} before (allowed drop {config.max_forgetting})")
    return True, f"held-out Dice {after:.4f} beats the active model's {before:.4f}"
