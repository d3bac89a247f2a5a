"""Random spatial and intensity changes of training slices (fine-tuning on a few cases).

A handful of corrected slices of one person, shown as they are, teach that person's exact
intensities and positions; the next person differs in both. Each epoch therefore sees every
slice moved (rotation, scale, shift: the labels follow with nearest neighbour) and re-lit
(gamma, contrast, a smooth bias field, blur and noise), as the synthetic training data vary.

``remap`` gives a share of slices a random smooth intensity curve (dark stays dark, the rest
may be inverted or reordered): real slices of one contrast then also teach other contrasts,
the idea of random intensity maps for single-source domain generalisation (Ouyang et al.,
"Causality-inspired single-source domain generalization for medical image segmentation",
IEEE TMI 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.interpolate import PchipInterpolator


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges drawn uniformly per slice and epoch."""

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.15)
    shift_px: float = 15.0
    gamma_sd: float = 0.3
    bias: float = 0.3
    blur_px: float = 1.0
    noise: float = 0.04
    remap: float = 0.0  # probability of a random intensity curve


#: Where the random curve's knots sit: dense near zero, where a fat image keeps its muscle.
_KNOTS = np.array([0.0, 0.03, 0.08, 0.18, 0.35, 0.6, 1.0])


def remap_intensity(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (values 0-1) through a random smooth curve that keeps 0 at 0 (air stays
    dark) and takes every other knot anywhere in 0-1, scaled so its brightest knot is 1."""
    values = np.concatenate([[0.0], rng.uniform(0, 1, _KNOTS.size - 1)])
    values /= values.max() or 1.0
    return PchipInterpolator(_KNOTS, values)(np.clip(image, 0, 1)).astype(np.float32)


def augment_slice(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  config: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One randomly moved and re-lit copy of a normalised slice (values 0-1) and its labels."""
    config = config or AugmentConfig()
    h, w = image.shape
    angle = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg))
    s = rng.uniform(*config.scale)
    c, si = np.cos(angle) / s, np.sin(angle) / s
    matrix = np.array([[c, -si], [si, c]])
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    shift = rng.uniform(-config.shift_px, config.shift_px, 2)
    offset = centre - matrix @ (centre + shift)
    moved = ndi.affine_transform(image, matrix, offset, order=1, mode="constant", cval=0.0)
    moved_labels = ndi.affine_transform(labels, matrix, offset, order=0, mode="constant",
                                        cval=0)
    if config.remap and rng.random() < config.remap:
        moved = remap_intensity(moved, rng)
    out = np.clip(moved, 0, None) ** np.exp(rng.normal(0, config.gamma_sd))
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    a = rng.normal(0, 1, 5)
    field = a[0] * xx + a[1] * yy + 0.5 * (a[2] * xx * xx + a[3] * yy * yy + a[4] * xx * yy)
    field = field / (np.abs(field).max() or 1.0)
    out = out * np.exp(config.bias * rng.uniform(0, 1) * field)
    sigma = rng.uniform(0, config.blur_px)
    if sigma > 0.1:
        out = ndi.gaussian_filter(out, sigma)
    out = out + rng.normal(0, rng.uniform(0, config.noise), out.shape)
    return np.clip(out, 0, 1).astype(np.float32), moved_labels.astype(labels.dtype)


def augment_batch(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                  config: AugmentConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`augment_slice` applied to each of N slices."""
    pairs = [augment_slice(i, lab, rng, config) for i, lab in zip(images, labels, strict=True)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
