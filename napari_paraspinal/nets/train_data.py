"""Training slices (:class:`TrainData`) and the samples each epoch draws from them.

:func:`training_epoch` gives one epoch's samples:

* multi-data training (the paper's): the gradient-magnitude image of every slice
  (:func:`gradient_magnitude`) is an extra sample with the same labels, so the network also
  learns from edges and relies less on absolute intensity;
* left-right mirroring, each sample with probability 1/2: the columns are reversed AND the left
  and right label values (and label-mask columns) are exchanged, since a mirrored left muscle
  is on the right and must be taught as the right one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..core.labels import LR_SWAP, NUM_CLASSES, swap_left_right
from .augment import augment_batch
from .train_config import TrainConfig


@dataclass
class TrainData:
    """Slices ``N x H x W`` float32, labels ``N x H x W`` uint8, ``label_mask`` ``N x C`` bool.

    ``label_mask[i, c]`` says whether class ``c`` is annotated in slice ``i`` (None: all are).
    """

    images: np.ndarray
    labels: np.ndarray
    label_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        labels = np.asarray(self.labels)
        if self.images.ndim != 3 or labels.shape != self.images.shape:
            raise ValueError(f"images and labels must both be N x H x W, got "
                             f"{self.images.shape} and {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise ValueError(f"label values must lie in 0..{NUM_CLASSES - 1}")
        self.labels = labels.astype(np.uint8)
        n = len(self.images)
        if self.label_mask is None:
            self.label_mask = np.ones((n, NUM_CLASSES), dtype=bool)
        self.label_mask = np.asarray(self.label_mask, dtype=bool)
        if self.label_mask.shape != (n, NUM_CLASSES):
            raise ValueError(f"label_mask must be {(n, NUM_CLASSES)}, got {self.label_mask.shape}")

    def __len__(self) -> int:
        return len(self.images)


def gradient_magnitude(image: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Sobel gradient magnitude of a slice (or of each slice of N x H x W), in [0, 1].

    Divided by its ``percentile`` (max if that is 0) and clipped, so a few extreme edges do not
    squash the rest; a flat slice gives zeros. Borders use nearest-value padding (no fake edge).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return np.stack([gradient_magnitude(s, percentile) for s in image])
    if image.ndim != 2:
        raise ValueError(f"image must be H x W or N x H x W, got shape {image.shape}")
    gy = ndimage.sobel(image, axis=0, mode="nearest")
    gx = ndimage.sobel(image, axis=1, mode="nearest")
    mag = np.hypot(gx, gy)
    scale = float(np.percentile(mag, percentile))
    if scale <= 0:
        scale = float(mag.max())
    if scale <= 0:
        return np.zeros_like(mag)
    return np.clip(mag / scale, 0.0, 1.0).astype(np.float32)


def mirror_left_right(data: TrainData) -> TrainData:
    """The slices mirrored in x, with left/right label values and label-mask columns swapped."""
    lut = np.array([LR_SWAP[c] for c in range(NUM_CLASSES)])
    return TrainData(
        images=data.images[:, :, ::-1].copy(),
        labels=swap_left_right(data.labels[:, :, ::-1]),
        label_mask=data.label_mask[:, lut],
    )


def training_epoch(data: TrainData, config: TrainConfig, rng: np.random.Generator) -> TrainData:
    """One epoch's samples: slices (+ gradient images), randomly mirrored, shuffled; with
    ``config.augment`` each slice is also randomly moved and re-lit (:mod:`.augment`)."""
    samples = data
    if config.augment:
        images, labels = augment_batch(data.images, data.labels, rng)
        samples = TrainData(images, labels, data.label_mask)
        data = samples
    if config.multi_data:
        samples = TrainData(
            images=np.concatenate([data.images, gradient_magnitude(data.images)]),
            labels=np.concatenate([data.labels, data.labels]),
            label_mask=np.concatenate([data.label_mask, data.label_mask]),
        )
    if config.flip:
        flip = rng.random(len(samples)) < 0.5
        mirrored = mirror_left_right(samples)
        samples = TrainData(
            images=np.where(flip[:, None, None], mirrored.images, samples.images),
            labels=np.where(flip[:, None, None], mirrored.labels, samples.labels),
            label_mask=np.where(flip[:, None], mirrored.label_mask, samples.label_mask),
        )
    order = rng.permutation(len(samples))
    return TrainData(samples.images[order], samples.labels[order], samples.label_mask[order])
