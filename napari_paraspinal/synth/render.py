"""Paint synthetic slices as tissue and label maps on the network's frame (1 mm pixels).

A case is drawn (:mod:`.anatomy`), rotated (±25°), warped, moved and painted straight onto
the frame that inference uses (:mod:`..preprocess.frame`: 256×256 at 1 mm, canonical
orientation, the body's posterior edge near the frame's back). The anchor is jittered by the
subcutaneous fat's thickness because the edge found in a real scan may be the skin (fat
bright) or the muscles (fat dark, e.g. a Dixon water image). Intensities come later, per
training step (:mod:`.contrast`), so one painted case serves many contrasts.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..core.labels import ES_L, ES_R, FAT_LABELS
from ..phantom.artefacts import smooth_field
from ..phantom.generator import paint_parts
from ..preprocess.frame import FRAME_BACK_MM, FRAME_SIZE
from .anatomy import SynthTissue, build_synth_parts, draw_synth_body
from .real_shapes import RealMuscles


@dataclass(frozen=True)
class RenderConfig:
    """Ranges of the spatial variation (drawn uniformly per case)."""

    size: int = FRAME_SIZE
    rotation_deg: float = 25.0
    warp_mm: tuple[float, float] = (0.0, 4.0)
    lateral_jitter_mm: float = 8.0
    back_jitter_mm: tuple[float, float] = (-32.0, 8.0)  # a body mask that reaches past the
    # skin (noise and ghosts in the air behind the back) puts the body further forward
    fat_infiltration: tuple[float, float] = (0.0, 0.55)
    fov_cut: float = 0.15  # share of cases whose field of view cuts the body
    real_shapes: float = 0.95  # share of cases with real MF/ES outlines (when given)


@dataclass
class SynthCase:
    """Tissue map, label map and the body as inference would find it."""

    tissue: np.ndarray  # uint8 SynthTissue codes
    labels: np.ndarray  # uint8 label values
    height: float
    through_disc: bool


def render_case(seed: int, shapes: list[RealMuscles] | None = None,
                config: RenderConfig | None = None) -> SynthCase:
    """One synthetic case; the same seed and shapes give the same case."""
    config = config or RenderConfig()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 77]))
    body = draw_synth_body(rng)
    real = None
    if shapes and rng.random() < config.real_shapes:
        real = shapes[int(rng.integers(len(shapes)))]
    parts, marks = build_synth_parts(body, rng, real)

    n = config.size
    centre = (np.arange(n, dtype=np.float32) - (n - 1) / 2)
    x, y = np.meshgrid(centre, centre)
    theta = np.deg2rad(rng.uniform(-config.rotation_deg, config.rotation_deg))
    c, s = np.cos(theta), np.sin(theta)
    back_y = (FRAME_BACK_MM - rng.uniform(0, 1) * (marks["skin_v"] - marks["back_muscle_edge_v"])
              + rng.uniform(*config.back_jitter_mm))
    back_y = min(back_y, FRAME_BACK_MM)
    # anatomical (0, back) lands at (jx, back_y): p = R (u, v) + t
    jx = rng.normal(0, config.lateral_jitter_mm)
    t = np.array([jx, back_y]) - np.array([-s * marks["back_muscle_edge_v"],
                                           c * marks["back_muscle_edge_v"]])
    dx, dy = x - t[0], y - t[1]
    u = c * dx + s * dy
    v = -s * dx + c * dy
    to_uv = np.array([[c, s, -(c * t[0] + s * t[1]) - c * (n - 1) / 2 - s * (n - 1) / 2],
                      [-s, c, (s * t[0] - c * t[1]) + s * (n - 1) / 2 - c * (n - 1) / 2],
                      [0, 0, 1]])
    to_index = np.linalg.inv(to_uv)[:2]
    warp = float(rng.uniform(*config.warp_mm))
    if warp > 0:
        u = u + warp * smooth_field(u.shape, (40.0, 40.0), rng, coarse=8)
        v = v + warp * smooth_field(u.shape, (40.0, 40.0), rng, coarse=8)
    tissue, labels = paint_parts(parts, u, v, to_index, pad=4 * warp + 2)
    tissue = tissue.astype(np.uint8)
    _infiltrate(tissue, labels, config, rng)
    _septa(tissue, labels, rng)
    if rng.random() < config.fov_cut:
        _cut_field_of_view(tissue, labels, rng)
    return SynthCase(tissue, labels.astype(np.uint8), body.height, body.through_disc)


def _infiltrate(tissue: np.ndarray, labels: np.ndarray, config: RenderConfig,
                rng: np.random.Generator) -> None:
    """Fatty infiltration of MF and ES in streaks and patches, each side its own amount."""
    streaky = smooth_field(tissue.shape, (float(rng.uniform(3, 8)), 1.0), rng, coarse=2)
    patchy = smooth_field(tissue.shape, (4.0, 4.0), rng, coarse=4)
    lo, hi = config.fat_infiltration
    person = float(rng.beta(1.2, 2.5))
    for value in FAT_LABELS:
        inside = (labels == value) & (tissue == SynthTissue.MUSCLE)
        if not inside.any():
            continue
        share = float(np.clip(lo + (hi - lo) * (person + rng.normal(0, 0.06)), 0, hi))
        mix = float(rng.uniform(0, 1))
        pattern = mix * streaky[inside] + (1 - mix) * patchy[inside]
        if share > 0.005:
            fat = np.zeros(tissue.shape, bool)
            fat[inside] = pattern > np.quantile(pattern, 1.0 - share)
            tissue[fat] = SynthTissue.MUSCLE_FAT


def _septa(tissue: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> None:
    """Thin fat septa inside the erector spinae (between its columns), as T2w shows them."""
    rows, cols = np.indices(tissue.shape)
    for value in (ES_L, ES_R):
        inside = labels == value
        if not inside.any() or rng.random() < 0.4:
            continue
        r, c = np.nonzero(inside)
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(r.size))
            angle = rng.uniform(-np.pi / 2, np.pi / 2) + np.pi / 2
            dist = np.abs((rows - r[k]) * np.cos(angle) - (cols - c[k]) * np.sin(angle))
            tissue[inside & (dist < rng.uniform(0.5, 1.1))] = SynthTissue.MUSCLE_FAT


def _cut_field_of_view(tissue: np.ndarray, labels: np.ndarray,
                       rng: np.random.Generator) -> None:
    """A field of view narrower than the body: air (and no label) outside a rectangle."""
    n = tissue.shape[0]
    keep = np.ones(tissue.shape, bool)
    if rng.random() < 0.6:
        half = int(rng.uniform(95, 125))
        keep[:, : max(n // 2 - half, 0)] = False
        keep[:, n // 2 + half:] = False
    else:
        keep[: int(rng.uniform(10, 70))] = False
    tissue[~keep] = SynthTissue.AIR
    labels[~keep] = 0


_WORKER: dict = {}


def _init_worker(shapes: list[RealMuscles] | None, config: RenderConfig) -> None:
    _WORKER.update(shapes=shapes, config=config)


def _job(seed: int) -> SynthCase:
    return render_case(seed, _WORKER["shapes"], _WORKER["config"])


def render_pool(n: int, seed: int, shapes: list[RealMuscles] | None = None,
                config: RenderConfig | None = None, workers: int = 1
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` cases (seeds ``seed + k``): tissue N×S×S, labels N×S×S, height and disc N×2."""
    config = config or RenderConfig()
    seeds = [seed + k for k in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(min(workers, os.cpu_count() or 1), initializer=_init_worker,
                                 initargs=(shapes, config)) as pool:
            cases = list(pool.map(_job, seeds, chunksize=16))
    else:
        _init_worker(shapes, config)
        cases = [_job(s) for s in seeds]
    tissue = np.stack([c.tissue for c in cases])
    labels = np.stack([c.labels for c in cases])
    info = np.array([[c.height, float(c.through_disc)] for c in cases], np.float32)
    return tissue, labels, info
