"""Assemble a phantom slice: anatomy painted on a sub-pixel grid, contrast, artefacts.

Partial volume is real: the slice is painted at ``supersample``² points per pixel; a pixel's
intensity is the mean over its points, its true fat fraction the share of its points that
are fat, and its label the label of its centre point (so labels are exact: the image was
rendered from them). A muscle's true fat fraction is the mean of the per-pixel fat fraction
over the pixels carrying its label; its CSA is the pixel count times the pixel area.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.config import config_to_dict
from ..core.geometry import Geometry, SliceImage
from ..core.labels import BY_VALUE, FAT_LABELS, NUM_CLASSES
from .anatomy import Part, Tissue, build_parts, draw_body
from .artefacts import bias_field, rician, smooth_field
from .contrast import CONTRASTS, tissue_intensities

LEVELS = ("L4-L5", "L5-S1")
_LEVEL_Z = {"L4-L5": -40.0, "L5-S1": -75.0}


@dataclass(frozen=True)
class PhantomConfig:
    """Every knob of the generator; ranges are drawn uniformly per case."""

    level: str = "L4-L5"
    contrast: str = "T2w"
    fov_mm: tuple[float, float] = (220.0, 420.0)
    spacing_mm: tuple[float, float] = (0.5, 1.2)
    matrix: tuple[int, int] = (256, 512)
    anisotropy: float = 0.12  # largest row/column spacing ratio minus one
    rotation_deg: float = 12.0
    shift_mm: float = 20.0
    fat_infiltration: tuple[float, float] = (0.0, 0.5)
    bias_strength: tuple[float, float] = (0.0, 0.35)
    noise: tuple[float, float] = (0.01, 0.04)  # Rician sigma relative to fat intensity
    warp_mm: float = 2.0
    supersample: int = 3
    scale: float = 1000.0  # intensity of fat before artefacts

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if self.contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, got {self.contrast!r}")
        if self.supersample < 1 or self.supersample % 2 == 0:
            raise ValueError("supersample must be an odd number ≥ 1 (labels come from the "
                             "centre point)")


@dataclass
class PhantomCase:
    """A phantom slice with its exact labels, true fat fraction map and ground truth."""

    image: SliceImage
    labels: np.ndarray
    fat_fraction: np.ndarray
    truth: dict = field(default_factory=dict)


def _grid(config: PhantomConfig, rng: np.random.Generator) -> tuple[tuple[int, int],
                                                                    tuple[float, float]]:
    """Matrix (rows, cols) and spacing (along columns, rows) for one case."""
    lo_s, hi_s = config.spacing_mm
    lo_m, hi_m = config.matrix
    fov = rng.uniform(*config.fov_mm)
    s_lo, s_hi = max(lo_s, fov / hi_m), min(hi_s, fov / lo_m)
    sx = float(rng.uniform(s_lo, s_hi)) if s_hi > s_lo else float(np.clip(fov / hi_m, lo_s,
                                                                           hi_s))
    cols = int(np.clip(round(fov / sx / 16) * 16, lo_m, hi_m))
    sy = float(min(hi_s, sx * rng.uniform(1.0, 1.0 + config.anisotropy)))
    rows = int(np.clip(round(cols * sx / sy * rng.uniform(0.78, 1.0) / 16) * 16, lo_m, hi_m))
    return (rows, cols), (sx, sy)


def paint_parts(parts: list[Part], u: np.ndarray, v: np.ndarray, to_index: np.ndarray,
           pad: float) -> tuple[np.ndarray, np.ndarray]:
    """Tissue and label of every sub-pixel point, painting parts in order.

    ``to_index`` (2×3) maps anatomical (u, v, 1) to grid (column, row) before the warp, so
    each part is evaluated only in its bounding box (padded for the warp).
    """
    tissue = np.zeros(u.shape, np.int8)
    labels = np.zeros(u.shape, np.uint8)
    for part in parts:
        u0, u1, v0, v1 = part.shape.bbox()
        rows, cols = _box_indices(u.shape, to_index, u0 - pad, u1 + pad, v0 - pad, v1 + pad)
        if rows is None:
            continue
        inside = part.shape.contains(u[rows, cols], v[rows, cols])
        tissue[rows, cols][inside] = int(part.tissue)
        labels[rows, cols][inside] = part.label
    return tissue, labels


def _box_indices(shape: tuple[int, int], to_index: np.ndarray, u0: float, u1: float,
                 v0: float, v1: float) -> tuple[slice | None, slice | None]:
    """Row and column slices of the grid covering an anatomical box."""
    corners = np.array([[u0, v0, 1], [u0, v1, 1], [u1, v0, 1], [u1, v1, 1]]) @ to_index.T
    c0, c1 = int(np.floor(corners[:, 0].min())), int(np.ceil(corners[:, 0].max())) + 1
    r0, r1 = int(np.floor(corners[:, 1].min())), int(np.ceil(corners[:, 1].max())) + 1
    c0, c1, r0, r1 = max(c0, 0), min(c1, shape[1]), max(r0, 0), min(r1, shape[0])
    if c0 >= c1 or r0 >= r1:
        return None, None
    return slice(r0, r1), slice(c0, c1)


def _infiltrate(tissue: np.ndarray, labels: np.ndarray, fine_mm: tuple[float, float],
                config: PhantomConfig, rng: np.random.Generator) -> dict[int, dict]:
    """Turn a share of each MF/ES muscle into fat, in streaks and patches; keep labels."""
    sx, sy = fine_mm
    streaky = smooth_field(tissue.shape, (6.0 / sy, 1.2 / sx), rng, coarse=2)
    patchy = smooth_field(tissue.shape, (4.0 / sy, 4.0 / sx), rng, coarse=4)
    lo, hi = config.fat_infiltration
    info = {}
    for value in FAT_LABELS:
        inside = (labels == value) & (tissue == Tissue.MUSCLE)
        if not inside.any():
            continue
        target = float(lo + (hi - lo) * rng.beta(1.3, 2.2))
        mix = float(rng.uniform(0, 1))  # 1 = all streaks, 0 = all patches
        pattern = mix * streaky[inside] + (1 - mix) * patchy[inside]
        if target > 0:
            threshold = np.quantile(pattern, 1.0 - target)
            fat = np.zeros(tissue.shape, bool)
            fat[inside] = pattern > threshold
            tissue[fat] = Tissue.FAT
        info[value] = {"target_fat_fraction": target, "streakiness": mix}
    return info


def generate_phantom(seed: int, config: PhantomConfig | None = None) -> PhantomCase:
    """One phantom slice; the same seed and config always give the same case.

    The anatomy depends on (seed, level) only, so the same seed in another contrast gives
    the same patient scanned differently (for domain-shift experiments).
    """
    config = config or PhantomConfig()
    level_code = LEVELS.index(config.level)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), level_code]))
    contrast_rng = np.random.default_rng(np.random.SeedSequence(
        [int(seed), level_code, 1 + CONTRASTS.index(config.contrast)]))

    (rows, cols), (sx, sy) = _grid(config, rng)
    theta = float(rng.uniform(-config.rotation_deg, config.rotation_deg))
    centre = rng.uniform(-20, 20, 2)
    disc = centre + [rng.uniform(-config.shift_mm, config.shift_mm),
                     25.0 + rng.uniform(-config.shift_mm, config.shift_mm)]
    z = _LEVEL_Z[config.level] + float(rng.uniform(-10, 10))
    origin = (float(centre[0] - (cols - 1) / 2 * sx), float(centre[1] - (rows - 1) / 2 * sy), z)
    geometry = Geometry(shape=(rows, cols), spacing=(sx, sy, 4.0), origin=origin)

    f = config.supersample
    offsets = (np.arange(f) + 0.5) / f - 0.5
    xs = origin[0] + (np.arange(cols)[:, None] + offsets[None, :]).ravel() * sx
    ys = origin[1] + (np.arange(rows)[:, None] + offsets[None, :]).ravel() * sy
    x, y = np.meshgrid(xs.astype(np.float32) - disc[0], ys.astype(np.float32) - disc[1])
    c, s = np.cos(np.deg2rad(theta)), np.sin(np.deg2rad(theta))
    u = c * x + s * y
    v = -s * x + c * y
    fine_mm = (sx / f, sy / f)
    # (column, row) -> (u, v) is affine before the warp; invert it for bounding boxes
    to_uv = np.array([[u[0, 1] - u[0, 0], u[1, 0] - u[0, 0], u[0, 0]],
                      [v[0, 1] - v[0, 0], v[1, 0] - v[0, 0], v[0, 0]], [0, 0, 1]], float)
    to_index = np.linalg.inv(to_uv)[:2]
    if config.warp_mm > 0:
        sigma = (40.0 / fine_mm[1], 40.0 / fine_mm[0])
        u = u + config.warp_mm * smooth_field(u.shape, sigma, rng, coarse=8)
        v = v + config.warp_mm * smooth_field(u.shape, sigma, rng, coarse=8)

    body = draw_body(rng)
    parts = build_parts(config.level, body, rng)
    tissue, fine_labels = paint_parts(parts, u, v, to_index, pad=4 * config.warp_mm + 2)
    infiltration = _infiltrate(tissue, fine_labels, fine_mm, config, rng)

    values = tissue_intensities(config.contrast, contrast_rng)
    texture = 1.0 + 0.05 * smooth_field(tissue.shape, (3.0 / fine_mm[1], 3.0 / fine_mm[0]),
                                        contrast_rng, coarse=4)
    fine = values[tissue] * texture
    image = fine.reshape(rows, f, cols, f).mean(axis=(1, 3))
    fat_fraction = (tissue == Tissue.FAT).reshape(rows, f, cols, f).mean(axis=(1, 3))
    labels = fine_labels[f // 2::f, f // 2::f].copy()

    bias_strength = float(contrast_rng.uniform(*config.bias_strength))
    noise = float(contrast_rng.uniform(*config.noise))
    bias = bias_field((rows, cols), bias_strength, contrast_rng)
    scale = config.scale
    image = rician(image * bias * scale, noise * scale * float(values[Tissue.FAT]),
                   contrast_rng)

    case = PhantomCase(
        image=SliceImage(image.astype(np.float32), geometry,
                         source=f"phantom:{config.level}:{config.contrast}:seed={seed}"),
        labels=labels.astype(np.uint8),
        fat_fraction=fat_fraction.astype(np.float32),
    )
    case.truth = _truth(case, seed, config, {
        "rotation_deg": theta, "disc_world_mm": [float(disc[0]), float(disc[1])],
        "bias_strength": bias_strength, "noise_sigma_rel": noise,
        "subcutaneous_fat_mm": body.fat, "body_half_width_mm": body.half_width,
        "body_half_depth_mm": body.half_depth,
        "infiltration": {BY_VALUE[k].short: v for k, v in infiltration.items()},
    })
    return case


def _truth(case: PhantomCase, seed: int, config: PhantomConfig, params: dict) -> dict:
    """Ground truth measured on the written label map and fat fraction map."""
    g = case.image.geometry
    area = g.pixel_area_mm2
    counts = np.bincount(case.labels.ravel(), minlength=NUM_CLASSES)
    structures = {}
    for value, lab in BY_VALUE.items():
        entry = {"value": value, "csa_mm2": float(counts[value] * area)}
        if value in FAT_LABELS:
            ff = float(case.fat_fraction[case.labels == value].mean()) if counts[value] else 0.0
            entry.update(fat_fraction=ff, fat_csa_mm2=entry["csa_mm2"] * ff,
                         lean_csa_mm2=entry["csa_mm2"] * (1 - ff))
        structures[lab.short] = entry
    return {
        "level": config.level,
        "contrast": config.contrast,
        "seed": int(seed),
        "shape": list(g.shape),
        "spacing_mm": list(g.spacing[:2]),
        "pixel_area_mm2": area,
        "structures": structures,
        "parameters": params,
        "config": config_to_dict(config),
    }
