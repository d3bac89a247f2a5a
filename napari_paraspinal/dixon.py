"""Dixon (water-fat) signal fat fraction inside the muscle labels.

A chemical-shift-encoded (Dixon) scan gives a water image W and a fat image F of the same
acquisition. The signal fat fraction of a pixel is F / (W + F); it is the reference the
intensity-based fat methods of :mod:`.fat` are compared with (:mod:`.bench_fat_real`).

The two images come from one acquisition, so they share a voxel grid even when their files
disagree on the origin (real exports lose or shift it): they are paired by voxel, with the
water image's geometry for both, and the difference is reported for the provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .core.errors import InputError
from .core.geometry import Geometry, SliceImage
from .core.labels import BY_VALUE, ES_L, ES_R, MF_L, MF_R, PS_L, PS_R

#: Muscles with a Dixon fat fraction column, in column order.
DIXON_LABELS: tuple[int, ...] = (PS_L, PS_R, MF_L, MF_R, ES_L, ES_R)


@dataclass(frozen=True)
class DixonConfig:
    """Noise rule of :func:`fat_fraction_map`.

    A pixel counts when its total signal W + F is at least ``noise_fraction`` times the
    ``percentile``-th percentile of W + F over the slice. The percentile is taken over the
    whole slice, so it lands in bright tissue (the body covers far more than 1 % of any
    axial slice) and does not depend on a body mask; 5 % of it is several times the air
    noise of a magnitude image and well below any tissue but cortical bone and gas, where
    F / (W + F) is noise divided by noise.
    """

    noise_fraction: float = 0.05
    percentile: float = 99.0


def _grid_text(shape: tuple[int, int]) -> str:
    return f"{shape[1]}x{shape[0]}"


def pair_dixon(water: SliceImage, fat: SliceImage, rtol: float = 1e-3
               ) -> tuple[SliceImage, SliceImage, list[str]]:
    """Water and fat on one voxel grid (the water image's geometry) and provenance notes.

    Raises :class:`InputError` naming the fat file when the matrix or the in-plane spacing
    (relative ``rtol``) differ: then they are not one acquisition's pair. When only the
    origin or the axes differ the fat image is paired by voxel and a note says by how much.
    """
    gw, gf = water.geometry, fat.geometry
    if gw.shape != gf.shape:
        raise InputError(fat.source, f"fat image {_grid_text(gf.shape)} does not match "
                                     f"water image {_grid_text(gw.shape)}")
    if not np.allclose(gf.spacing[:2], gw.spacing[:2], rtol=rtol, atol=0.0):
        raise InputError(fat.source, "fat image spacing {:.4f} x {:.4f} mm does not match "
                         "water image spacing {:.4f} x {:.4f} mm".format(*gf.spacing[:2],
                                                                        *gw.spacing[:2]))
    notes: list[str] = []
    shift = float(np.linalg.norm(np.subtract(gf.origin, gw.origin)))
    if shift > 1e-3 * max(gw.spacing[:2]):
        notes.append(f"fat paired with water by voxel: origins differ by {shift:.1f} mm")
    if not np.allclose(gf.matrix[:, :2], gw.matrix[:, :2], atol=1e-3):
        notes.append("fat paired with water by voxel: axes (direction) differ")
    paired = replace(fat, data=np.asarray(fat.data), geometry=gw,
                     notes=[*fat.notes, *notes])
    return water, paired, notes


def noise_level(total: np.ndarray, config: DixonConfig | None = None) -> float:
    """The W + F level below which a pixel is noise (see :class:`DixonConfig`)."""
    config = config or DixonConfig()
    return float(config.noise_fraction * np.percentile(total, config.percentile))


def fat_fraction_map(water: SliceImage | np.ndarray, fat: SliceImage | np.ndarray,
                     noise: float | None = None, config: DixonConfig | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel signal fat fraction F / (W + F) in [0, 1] and where it is valid.

    Negative magnitudes (interpolation undershoot) count as 0. A pixel is valid when
    W + F > 0 and W + F is at least ``noise`` (default :func:`noise_level`); invalid pixels
    get fat fraction 0 and are left out of every mean.
    """
    w = np.clip(np.asarray(getattr(water, "data", water), np.float64), 0, None)
    f = np.clip(np.asarray(getattr(fat, "data", fat), np.float64), 0, None)
    if w.shape != f.shape:
        raise ValueError(f"water {w.shape} and fat {f.shape} are not one grid")
    total = w + f
    level = noise_level(total, config) if noise is None else float(noise)
    valid = (total > 0) & (total >= level)
    ff = np.zeros_like(total)
    np.divide(f, total, out=ff, where=valid)
    return ff, valid


def dixon_columns(water: SliceImage | np.ndarray, fat: SliceImage | np.ndarray,
                  labels: np.ndarray, geometry: Geometry, noise: float | None = None
                  ) -> dict[str, float | int | None]:
    """``<short>_ff_pct`` (100 × mean F / (W + F) over the muscle's valid pixels) and
    ``<short>_ff_pixels_excluded`` (noise pixels left out) for PS, MF and ES on each side;
    None when the muscle is absent or has no valid pixel."""
    labels = np.asarray(labels)
    if labels.shape != geometry.shape:
        raise ValueError(f"labels {labels.shape} are not on the image grid {geometry.shape}")
    ff, valid = fat_fraction_map(water, fat, noise)
    row: dict[str, float | int | None] = {}
    for value in DIXON_LABELS:
        short = BY_VALUE[value].short
        inside = labels == value
        ok = inside & valid
        row[f"{short}_ff_pct"] = round(100.0 * float(ff[ok].mean()), 3) if ok.any() else None
        row[f"{short}_ff_pixels_excluded"] = int((inside & ~valid).sum())
    return row
