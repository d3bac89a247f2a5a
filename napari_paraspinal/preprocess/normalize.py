"""Intensity normalisation of a slice from robust statistics of its body.

Why: MR intensities have no absolute scale (gain, coil, sequence), so the network must see
intensities expressed relative to the patient's own tissue. Statistics are taken inside the
body mask only (air would dominate otherwise) and are percentiles, so a few hot pixels or a
large share of fat move them little; the result does not depend on the global scale.

The settings are a small JSON-friendly dataclass that a model card stores, so inference
repeats exactly what training did.

Methods:
- ``"percentile"`` (default): body percentile ``low_percentile`` -> ``low_value`` and
  ``high_percentile`` -> ``high_value``, linear in between.
- ``"median_iqr"``: ``(x - median) / (p75 - p25)`` of the body.
Both then clip to ``[clip_low, clip_high]`` (``None``: no bound on that side).

Outliers: before scaling, pixels beyond the body's robust range (its 1st-99th percentile
widened by that span on each side) are pulled to it, so one pixel of -32768 or 1e30 cannot
reach the network as an extreme value even without clipping, nor set the scale of a
min/max configuration (percentiles 0 and 100); ordinary tissue lies well inside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.geometry import SliceImage
from .bodymask import body_mask

METHODS = ("percentile", "median_iqr")


@dataclass(frozen=True)
class NormalizeConfig:
    """How to normalise; stored in the model card (:func:`.config_to_dict`)."""

    method: str = "percentile"
    low_percentile: float = 1.0
    high_percentile: float = 99.0
    low_value: float = 0.0
    high_value: float = 1.0
    clip_low: float | None = 0.0
    clip_high: float | None = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown normalisation method {self.method!r}; use one of {METHODS}")
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise ValueError(
                f"need 0 <= low_percentile < high_percentile <= 100, got "
                f"{self.low_percentile}, {self.high_percentile}"
            )
        if self.low_value == self.high_value:
            raise ValueError("low_value and high_value must differ")
        if self.clip_low is not None and self.clip_high is not None:
            if self.clip_low >= self.clip_high:
                raise ValueError("clip_low must be below clip_high")



def normalize(
    image: SliceImage, mask: np.ndarray | None, config: NormalizeConfig | None = None
) -> SliceImage:
    """Normalised copy of ``image`` (float32, same geometry) from statistics inside ``mask``.

    ``mask=None`` uses :func:`body_mask`. Raises :class:`InputError` when the mask holds no
    pixel or the body has no intensity range.
    """
    config = config or NormalizeConfig()
    data = np.asarray(image.data, dtype=np.float64)
    mask = body_mask(image) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != data.shape:
        raise ValueError(f"mask shape {mask.shape} does not match image {data.shape}")
    body = data[mask]
    if body.size == 0:
        raise InputError(image.source, "empty body mask; cannot normalise intensities")
    if not np.all(np.isfinite(body)):
        raise InputError(image.source, "non-finite pixels in the body; cannot normalise")

    data = _fence(data, body)
    body = data[mask]
    if config.method == "percentile":
        lo, hi = np.percentile(body, [config.low_percentile, config.high_percentile])
        scale = (hi - lo) / (config.high_value - config.low_value)
        offset = lo - config.low_value * scale
    else:
        p25, offset, p75 = np.percentile(body, [25.0, 50.0, 75.0])
        scale = p75 - p25
    if not scale > 0:
        raise InputError(image.source, "no intensity range inside the body; cannot normalise")

    out = (data - offset) / scale
    if config.clip_low is not None or config.clip_high is not None:
        out = np.clip(out, config.clip_low, config.clip_high)
    return image.with_data(out.astype(np.float32))


def _fence(data: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``data`` with pixels beyond the body's 1st-99th percentile, widened by that span on
    each side, pulled to those bounds (robust: percentiles, not min/max)."""
    lo, hi = np.percentile(body, [1.0, 99.0])
    span = max(float(hi - lo), 0.0)
    return np.clip(data, lo - span, hi + span)
