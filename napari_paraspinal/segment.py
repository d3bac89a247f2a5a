"""Segment a slice with a model bundle: preprocess → network in atlas space → native labels.

The network's class probabilities are mapped back to the native grid (linear) and the argmax
is taken there, so labels land on the user's pixels with the user's geometry; areas come out
in mm² on the native grid.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from .core.errors import InputError
from .core.geometry import SliceImage
from .jobs import Cancel, cancelled
from .nets.bundle import ModelCard, atlas_hashes, load_bundle
from .nets.segmenter import PRECISIONS, Segmenter, resolve_device
from .postprocess import CHOICES, largest_components
from .preprocess.atlas import Atlas, load_atlases
from .preprocess.atlas_space import probabilities_to_native
from .preprocess.chain import (
    AUTO,
    BODY,
    PreprocessConfig,
    Preprocessed,
    preprocess_from_card,
    preprocess_slice,
)
from .preprocess.registration_config import RegistrationConfig
from .seg_qc import segmentation_qc
from .sides import CHOICES as SIDES_CHOICES
from .sides import DEFAULT as SIDES_DEFAULT
from .sides import assign_sides, mirror_channels

#: The network's batch on a CPU: small batches keep a level's activations in the processor's
#: cache (``paraspinal bench network`` prints the time per batch size).
CPU_NET_BATCH = 4


@dataclass
class Model:
    """A loaded bundle: network, card, atlases and the preprocessing it was trained with."""

    segmenter: Segmenter
    card: ModelCard
    atlases: dict[str, Atlas]
    preprocess: PreprocessConfig
    path: Path
    device: torch.device
    postprocess: str = "none"  # "largest_component": each muscle kept as one piece
    sides: str = SIDES_DEFAULT  # "midline": left/right from the spine's midline
    mirror: bool = True  # average with the network's view of the mirrored slice
    precision: str = "float32"  # or "bfloat16" (faster where the processor has it)


@dataclass
class Segmentation:
    """Labels on the native grid, the probabilities behind them and the preprocessing."""

    labels: np.ndarray
    probabilities: np.ndarray
    preprocessed: Preprocessed
    seconds: dict[str, float] = field(default_factory=dict)


def default_model_path() -> Path:
    """Where the shipped model lives (``models/<DEFAULT_MODEL>``)."""
    from .models import DEFAULT_MODEL, MODELS_DIR

    return MODELS_DIR / DEFAULT_MODEL


def load_model(path: str | os.PathLike[str] | None = None, device: str = "auto",
               sides: str = SIDES_DEFAULT, mirror: bool = True, precision: str = "float32"
               ) -> Model:
    """Load a bundle (default: the shipped model); only safetensors and JSON are read.

    ``sides``: ``"midline"`` gives each muscle pair's pixels to the side of the spine's
    midline they lie on (:mod:`.sides`); ``"network"`` keeps the network's own left/right.
    ``mirror``: average the network's probabilities with those of the mirrored slice (read
    back with left and right exchanged), at twice the network's cost. ``precision``: the
    network's arithmetic (:meth:`.nets.segmenter.Segmenter.predict_proba`).
    """
    if sides not in SIDES_CHOICES:
        raise ValueError(f"sides must be one of {SIDES_CHOICES}, not {sides!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, not {precision!r}")
    path = Path(path) if path is not None else default_model_path()
    if not path.is_dir():
        raise InputError(path, "no model bundle here (a folder with weights.safetensors and "
                               "card.json)")
    state, card = load_bundle(path)
    try:
        segmenter = Segmenter.from_dict(card.network)
        segmenter.load_state_dict(state)
    except (ValueError, RuntimeError, TypeError) as err:
        raise InputError(path, f"weights do not fit the card's network: {err}") from err
    dev = resolve_device(device)
    segmenter.to(dev).eval()
    # N4 and normalisation decide what the network sees, so they repeat training exactly;
    # registration only aligns the slice with the atlas and runs with this version's
    # settings (the card keeps the ones training used; provenance records the ones run).
    preprocess = replace(preprocess_from_card(card.preprocessing),
                         registration=RegistrationConfig())
    postprocess = card.preprocessing.get("postprocess", "none")
    if postprocess not in CHOICES:
        raise InputError(path / "card.json", f"unknown postprocess {postprocess!r}; "
                                             f"expected one of {CHOICES}")
    atlases = load_atlases(path / "atlases", atlas_hashes(card))  # each file checked as read
    return Model(segmenter, card, atlases, preprocess, path, dev, postprocess, sides, mirror,
                 precision)


def segment_slice(image: SliceImage, model: Model, level: str = AUTO) -> Segmentation:
    """Segment one slice; raises :class:`InputError` for a slice the chain cannot use."""
    ((_, result),) = segment_many([image], model, level)
    if isinstance(result, InputError):
        raise result
    return result


def segment_many(images: Sequence[SliceImage], model: Model, level: str = AUTO,
                 batch_size: int = 8, cancel: Cancel | None = None
                 ) -> Iterator[tuple[int, Segmentation | InputError]]:
    """Segment slices (e.g. of one stack), the network running on batches of them.

    Yields ``(index, segmentation)`` in order, or ``(index, InputError)`` for a slice the
    chain cannot use, so one bad slice never stops the others. Setting ``cancel`` stops
    before the next batch.
    """
    workers = max(1, min(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # SimpleITK, scipy and torch release the GIL
        for start in range(0, len(images), batch_size):
            if cancelled(cancel):
                return
            batch = range(start, min(start + batch_size, len(images)))
            pre = dict(zip(batch, pool.map(_preprocess, [images[k] for k in batch],
                                           repeat(model), repeat(level)), strict=True))
            ready = [k for k in batch if isinstance(pre[k], Preprocessed)]
            t = time.perf_counter()
            probs = (_predict(model, np.stack([pre[k].atlas_image for k in ready]), batch_size)
                     if ready else [])
            t_net = (time.perf_counter() - t) / max(len(ready), 1)
            done = dict(zip(ready, pool.map(_to_native, [images[k] for k in ready],
                                            [pre[k] for k in ready], probs, repeat(model),
                                            repeat(t_net)), strict=True))
            for k in batch:
                yield k, done.get(k, pre[k])


def _predict(model: Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities of frame images (N×H×W); with ``model.mirror`` averaged with those
    of the mirrored images, mirrored back with left and right labels exchanged."""
    if model.device.type == "cpu":
        batch_size = min(batch_size, CPU_NET_BATCH)
    probs = model.segmenter.predict_proba(images, batch_size=batch_size, device=model.device,
                                          precision=model.precision)
    if not model.mirror:
        return probs
    mirrored = model.segmenter.predict_proba(images[:, :, ::-1].copy(), batch_size=batch_size,
                                             device=model.device,
                                             precision=model.precision)[:, :, :, ::-1]
    for c, m in enumerate(mirror_channels(probs.shape[1])):  # in place: no N×C×H×W copies
        probs[:, c] += mirrored[:, m]
    probs *= 0.5
    return probs


def _preprocess(image: SliceImage, model: Model, level: str) -> Preprocessed | InputError:
    try:
        return preprocess_slice(image, model.atlases, level, model.preprocess)
    except InputError as err:
        return err


def _to_native(image: SliceImage, pre: Preprocessed, atlas_probs: np.ndarray, model: Model,
               t_net: float) -> Segmentation:
    """Probabilities back on the slice's own grid, labels, clean-up and QC."""
    t = time.perf_counter()
    if model.sides == "midline":
        atlas_probs = assign_sides(atlas_probs)
    native = probabilities_to_native(atlas_probs, pre.registration.mapping)
    labels = native.argmax(0).astype(np.uint8)
    if model.postprocess == "largest_component":
        labels = largest_components(native, labels)
    t_back = time.perf_counter() - t
    if model.preprocess.frame == BODY:
        # no registration vouches for the body frame: the result is checked instead
        reasons = segmentation_qc(labels, native, image.geometry)
        pre.registration.flagged, pre.registration.reasons = bool(reasons), reasons
    seconds = {**pre.seconds, "network": t_net, "to_native": t_back}
    seconds["total"] = pre.seconds["total"] + t_net + t_back
    return Segmentation(labels, native.astype(np.float32), pre, seconds)


def uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel uncertainty of a segmentation (C x H x W probabilities): 1 − the highest
    class probability, 0 where the model is sure."""
    return (1.0 - np.asarray(probabilities).max(0)).astype(np.float32)
