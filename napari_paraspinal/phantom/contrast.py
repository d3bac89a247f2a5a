"""Tissue intensities per contrast (arbitrary units, fat ≈ 1 on T2w)."""

from __future__ import annotations

import numpy as np

from .anatomy import Tissue

CONTRASTS = ("T2w", "T1w", "dixon_fat", "dixon_water")

# AIR FAT MUSCLE SKIN CSF NUCLEUS ANNULUS CORTEX MARROW NERVE VESSEL GAS FLUID WALL
_TABLE = {
    "T2w": (0.0, 1.00, 0.28, 0.55, 1.15, 0.95, 0.30, 0.06, 0.55, 0.45, 0.06, 0.02, 0.85, 0.35),
    "T1w": (0.0, 1.00, 0.45, 0.60, 0.15, 0.38, 0.33, 0.06, 0.80, 0.40, 0.10, 0.02, 0.25, 0.45),
    "dixon_fat": (0.0, 1.00, 0.05, 0.30, 0.02, 0.03, 0.03, 0.02, 0.55, 0.04, 0.02, 0.01, 0.03,
                  0.08),
    "dixon_water": (0.0, 0.07, 0.62, 0.45, 1.00, 0.85, 0.45, 0.04, 0.30, 0.55, 0.10, 0.02,
                    0.90, 0.55),
}


def tissue_intensities(contrast: str, rng: np.random.Generator) -> np.ndarray:
    """Intensity of each tissue for this case: the table with ±8 % variation per tissue."""
    if contrast not in _TABLE:
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    base = np.asarray(_TABLE[contrast], dtype=np.float32)
    assert base.size == len(Tissue)
    return base * rng.uniform(0.92, 1.08, base.size).astype(np.float32)
