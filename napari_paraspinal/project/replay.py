"""Replay for fine-tuning: the active model's original training data, regenerated.

So that fine-tuning on a few corrected cases forgets nothing, they are mixed with a sample of
the data the model was trained on. That data is never stored: a phantom-trained model's card
names the generator's contrast and seeds (the generator is deterministic, so the replay *is*
its training data), and a model trained on synthetic slices gets fresh cases of the same
generator (:mod:`..synth`), which are a sample of the same distribution.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.config import config_to_dict
from ..core.labels import NUM_CLASSES
from ..jobs import Cancel, ProgressFn, cancelled, report
from ..nets.samples import AtlasSamples
from ..phantom import LEVELS, PhantomConfig, generate_phantom
from ..phantom.contrast import CONTRASTS
from ..preprocess.atlas_space import labels_to_atlas
from ..preprocess.chain import preprocess_slice

_GENERATOR = re.compile(r"phantom\s+(\S+?),?\s+seeds\s+(\d+)\s*(?:-|\.\.)\s*(\d+)\s*\(train\)")
#: Seeds used for replay when a phantom-trained card does not say which seeds it used.
FALLBACK_REPLAY_SEEDS = (700_000, 700_999)
#: Replay of a model trained on synthetic slices: fresh cases of the same generator (its
#: training saw each anatomy in random contrasts, so any seeds are a sample of its data).
SYNTHETIC = "synthetic"
SYNTHETIC_REPLAY_SEEDS = (800_000_000, 800_099_999)


@dataclass
class ReplaySource:
    """How to regenerate the original training data: phantoms of one contrast, seed range."""

    contrast: str
    first_seed: int
    last_seed: int
    exact: bool  # the seeds are the original training seeds

    def seeds(self, n: int, seed: int) -> list[int]:
        """``n`` seeds drawn without replacement (with, if the range is smaller), sorted."""
        pool = np.arange(self.first_seed, self.last_seed + 1)
        rng = np.random.default_rng(seed)
        return sorted(int(s) for s in rng.choice(pool, size=n, replace=n > len(pool)))

    def level(self, seed: int) -> str:
        """The level the training set gave this seed (levels alternate from the first)."""
        return LEVELS[(seed - self.first_seed) % len(LEVELS)]


def replay_source(card: dict) -> ReplaySource | None:
    """Where the model's original training data can be regenerated from, if anywhere.

    The card's ``data.generator`` names the phantom contrast and training seeds (as ``paraspinal
    train`` writes it); a card that only lists phantom ``train_sources`` gets phantoms of
    that contrast from :data:`FALLBACK_REPLAY_SEEDS`; anything else gets None.
    """
    data = card.get("data") or {}
    if str(data.get("generator", "")).startswith("synthetic"):
        return ReplaySource(SYNTHETIC, *SYNTHETIC_REPLAY_SEEDS, True)
    match = _GENERATOR.search(str(data.get("generator", "")))
    if match and match.group(1) in CONTRASTS:
        return ReplaySource(match.group(1), int(match.group(2)), int(match.group(3)), True)
    contrasts = {s.split(":")[2] for s in data.get("train_sources", [])
                 if isinstance(s, str) and s.startswith("phantom:") and s.count(":") >= 2}
    if len(contrasts) == 1 and next(iter(contrasts)) in CONTRASTS:
        return ReplaySource(contrasts.pop(), *FALLBACK_REPLAY_SEEDS, False)
    return None


def replay_samples(source: ReplaySource, seeds: Sequence[int], model: Any,
                   cache: Path | None = None, progress: ProgressFn | None = None,
                   cancel: Cancel | None = None) -> AtlasSamples | None:
    """Phantoms of ``seeds`` in the model's atlas space (cached in ``cache``); None if
    cancelled. Progress: stage ``replay``, one step per phantom.

    ``model`` is a :class:`..segment.Model` (its atlases and preprocessing are used).
    """
    key = hashlib.sha256(json.dumps({
        "contrast": source.contrast, "seeds": list(seeds),
        "levels": [source.level(s) for s in seeds], "preprocess": config_to_dict(model.preprocess),
        "atlases": _folder_digest(model.path / "atlases")}, sort_keys=True).encode()
    ).hexdigest()[:24]
    path = cache / f"{key}.npz" if cache is not None else None
    if path is not None and path.is_file():
        return AtlasSamples.load(path)
    if source.contrast == SYNTHETIC:
        samples = synthetic_samples(seeds)
        if path is not None:
            samples.save(path)
        return samples
    images, labels, sources = [], [], []
    for k, seed in enumerate(seeds):
        if cancelled(cancel):
            return None
        level = source.level(seed)
        case = generate_phantom(seed, PhantomConfig(level=level, contrast=source.contrast))
        pre = preprocess_slice(case.image, model.atlases, level, model.preprocess)
        images.append(pre.atlas_image)
        labels.append(labels_to_atlas(case.labels, pre.registration.mapping))
        sources.append(case.image.source)
        report(progress, "replay", k + 1, len(seeds),
               message=f"replay slice {k + 1}/{len(seeds)}")
    samples = AtlasSamples(np.stack(images), np.stack(labels),
                           np.ones((len(seeds), NUM_CLASSES), bool), sources)
    if path is not None:
        samples.save(path)
    return samples


def synthetic_samples(seeds: Sequence[int]) -> AtlasSamples:
    """Synthetic slices (body frame, random contrast) of the given seeds, fully labelled."""
    from ..synth.contrast import synthesize
    from ..synth.real_shapes import default_shapes_dir, load_real_muscles
    from ..synth.render import render_case

    folder = default_shapes_dir()
    shapes = load_real_muscles(folder) if folder.is_dir() else None
    images, labels = [], []
    for seed in seeds:
        case = render_case(seed, shapes)
        gen = torch.Generator().manual_seed(int(seed))
        images.append(synthesize(torch.from_numpy(case.tissue).long(), gen)[0].numpy())
        labels.append(case.labels)
    return AtlasSamples(np.stack(images), np.stack(labels),
                        np.ones((len(seeds), NUM_CLASSES), bool),
                        [f"synthetic:seed={s}" for s in seeds])


def _folder_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()
