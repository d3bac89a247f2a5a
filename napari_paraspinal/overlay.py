"""Overlay PNGs: a slice in the radiological view with the labels drawn on it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .core.atomic import atomic_path
from .core.geometry import SliceImage
from .core.labels import BY_VALUE, LABELS
from .core.orientation import canonical_reorientation


def window(data: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.5) -> np.ndarray:
    """Scale intensities to 0–255 between two percentiles of the non-zero pixels."""
    finite = data[np.isfinite(data)]
    nonzero = finite[finite != 0]
    ref = nonzero if nonzero.size else finite
    if ref.size == 0:
        return np.zeros(data.shape, np.uint8)
    lo, hi = np.percentile(ref, [low_pct, high_pct])
    scaled = (np.nan_to_num(data.astype(np.float32)) - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def overlay_rgb(
    image: SliceImage,
    labels: np.ndarray | None = None,
    *,
    fill_alpha: float = 0.35,
    contours: bool = True,
    fat_mask: np.ndarray | None = None,
) -> np.ndarray:
    """RGB uint8 picture in canonical orientation (patient right on the viewer's left).

    The display is resampled to square pixels so anisotropic spacing does not distort it.
    """
    r = canonical_reorientation(image.geometry)
    grey = window(r.apply(image.data))
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    if labels is not None:
        lab = r.apply(np.asarray(labels))
        for value in np.unique(lab):
            if value == 0 or int(value) not in BY_VALUE:
                continue
            mask = lab == value
            color = np.asarray(BY_VALUE[int(value)].color, np.float32)
            rgb[mask] = (1 - fill_alpha) * rgb[mask] + fill_alpha * color
            if contours:
                edge = mask & ~ndimage.binary_erosion(mask)
                rgb[edge] = color
    if fat_mask is not None:
        fat = r.apply(np.asarray(fat_mask, bool))
        rgb[fat] = 0.4 * rgb[fat] + 0.6 * np.asarray(FAT_COLOR, np.float32)
    out = rgb.clip(0, 255).astype(np.uint8)
    sx, sy = (image.geometry.spacing[1], image.geometry.spacing[0]) if r.transpose else (
        image.geometry.spacing[0], image.geometry.spacing[1])
    if not np.isclose(sx, sy, rtol=1e-3):
        h, w = out.shape[:2]
        size = (max(1, round(w * sx / min(sx, sy))), max(1, round(h * sy / min(sx, sy))))
        out = np.asarray(Image.fromarray(out).resize(size, Image.NEAREST))
    return out


FAT_COLOR = (255, 230, 0)  # yellow, as the napari fat layer: apart from every label colour


def legend_rgb(height: int, width: int = 170, fat: bool = False) -> np.ndarray:
    """A colour key of the eight labels (and fat), as an RGB strip beside an overlay."""
    from PIL import ImageDraw

    strip = Image.new("RGB", (width, height), (20, 20, 20))
    draw = ImageDraw.Draw(strip)
    for n, lab in enumerate(LABELS):
        y = 8 + 18 * n
        draw.rectangle([8, y, 20, y + 12], fill=lab.color)
        draw.text((26, y), f"{lab.value} {lab.short}", fill=(230, 230, 230))
    if fat:
        y = 8 + 18 * len(LABELS)
        draw.rectangle([8, y, 20, y + 12], fill=FAT_COLOR)
        draw.text((26, y), "fat in MF/ES", fill=(230, 230, 230))
    return np.asarray(strip)


def save_overlay_png(
    image: SliceImage,
    labels: np.ndarray | None,
    path: str | os.PathLike[str],
    *,
    fat_mask: np.ndarray | None = None,
    legend: bool = True,
) -> Path:
    """Write the overlay (and a label key) as a PNG, atomically."""
    rgb = overlay_rgb(image, labels, fat_mask=fat_mask)
    if legend and labels is not None:
        rgb = np.concatenate([rgb, legend_rgb(rgb.shape[0], fat=fat_mask is not None)], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")
    return Path(path)
