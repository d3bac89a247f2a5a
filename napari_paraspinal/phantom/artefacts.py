"""Acquisition artefacts: smooth fields (bias, texture, infiltration) and Rician noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_field(shape: tuple[int, int], sigma_px: tuple[float, float],
                 rng: np.random.Generator, coarse: int = 4) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field, made on a coarse grid for speed."""
    small = (max(4, shape[0] // coarse), max(4, shape[1] // coarse))
    noise = rng.standard_normal(small).astype(np.float32)
    field = ndimage.gaussian_filter(noise, (sigma_px[0] / coarse, sigma_px[1] / coarse),
                                    mode="wrap")
    field = ndimage.zoom(field, (shape[0] / small[0], shape[1] / small[1]), order=1)
    field = field[: shape[0], : shape[1]]
    if field.shape != shape:
        field = np.pad(field, [(0, shape[0] - field.shape[0]), (0, shape[1] - field.shape[1])],
                       mode="edge")
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def bias_field(shape: tuple[int, int], strength: float, rng: np.random.Generator
               ) -> np.ndarray:
    """Smooth multiplicative field: a random quadratic plus a posterior coil hot spot.

    ``strength`` is the approximate half-range of the log field (0.3 ≈ ±35 %).
    """
    jj, ii = np.meshgrid(np.linspace(-1, 1, shape[0], dtype=np.float32),
                         np.linspace(-1, 1, shape[1], dtype=np.float32), indexing="ij")
    c = rng.normal(0, 1, 6)
    log = c[0] * ii + c[1] * jj + 0.5 * (c[2] * ii * ii + c[3] * jj * jj + c[4] * ii * jj)
    log += c[5] * np.exp(-((ii / 0.8) ** 2 + ((jj - 1.0) / 0.6) ** 2))  # coil under the back
    span = float(log.max() - log.min()) or 1.0
    log = (log - log.mean()) / span * 2.0 * strength
    return np.exp(log).astype(np.float32)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of standard deviation ``sigma``."""
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.hypot(real, imag).astype(np.float32)
