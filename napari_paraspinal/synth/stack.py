"""Synthetic axial stacks of a lumbar spine with known levels, for testing level counting.

A spine is laid out along z (mm, superior positive, 0 at the top of the sacrum): discs
L5-S1 up to T12-L1 with random thickness (7-14 mm) and tilt (L5-S1 strongly tilted, as
lordosis makes it), vertebral bodies 24-31 mm high between them, the sacrum below 0. Each
slice is painted with :mod:`.anatomy` for its level (one body per stack); a slice near a
tilted disc shows the disc only where its plane crosses it, so edge slices carry part of a
disc, as real scans do. Below L5-S1 the slice is drawn as a lowest-lumbar vertebral body
with iliac wings: this generator has no sacrum-specific anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..core.labels import DI
from ..levels import BODY_NAMES, DISC_NAMES
from ..phantom.generator import paint_parts
from .anatomy import SynthTissue, build_synth_parts, draw_synth_body
from .contrast import synthesize
from .real_shapes import RealMuscles


@dataclass(frozen=True)
class SpineLayout:
    """Disc centres (mm), thickness (mm) and tilt (degrees), L5-S1 first."""

    centres: tuple[float, ...]
    thickness: tuple[float, ...]
    tilt_deg: tuple[float, ...]

    def level_at(self, z: float) -> tuple[str, bool]:
        """True level at height z on the midline (the disc's centre line), and disc or not."""
        for k, (c, t) in enumerate(zip(self.centres, self.thickness, strict=True)):
            if abs(z - c) < t / 2:
                return DISC_NAMES[k], True
        below = sum(1 for c, t in zip(self.centres, self.thickness, strict=True)
                    if z >= c + t / 2)
        return BODY_NAMES[below], False

    def height_at(self, z: float) -> float:
        """The anatomy's level height (0 = L5-S1 ... 4 = L1-L2), clipped to that range."""
        return float(np.clip(np.interp(z, self.centres[:5], np.arange(5.0)), 0.0, 4.0))


def draw_layout(rng: np.random.Generator) -> SpineLayout:
    """A spine from the sacrum up to T12-L1."""
    thick = [rng.uniform(9, 14), rng.uniform(9, 14), *rng.uniform(7, 11, 3), rng.uniform(5, 8)]
    tilt = [rng.uniform(10, 30), rng.uniform(0, 15), *rng.uniform(-8, 8, 4)]
    centres = [thick[0] / 2]
    for k in range(1, len(thick)):
        centres.append(centres[-1] + thick[k - 1] / 2 + rng.uniform(24, 31) + thick[k] / 2)
    return SpineLayout(tuple(map(float, centres)), tuple(map(float, thick)),
                       tuple(map(float, tilt)))


@dataclass
class SynthStack:
    """Slices as stored (``z`` may run top-down), their label/tissue maps and true levels."""

    z: np.ndarray
    labels: np.ndarray  # N×S×S uint8, 1 mm pixels
    tissue: np.ndarray  # N×S×S uint8 SynthTissue codes
    levels: list[str]
    disc: np.ndarray  # bool per slice: the midline is inside a disc
    layout: SpineLayout
    reaches_sacrum: bool  # the lowest slice lies below L5-S1
    seed: int

    def disc_areas(self) -> np.ndarray:
        """True DI area per slice (mm²)."""
        return (self.labels == DI).sum(axis=(1, 2)).astype(float)

    def images(self) -> np.ndarray:
        """MR-like images (one random contrast for the whole stack), N×S×S float32 in 0-1."""
        out = []
        for tissue in self.tissue:
            gen = torch.Generator().manual_seed(self.seed)  # same contrast on every slice
            image, _ = synthesize(torch.from_numpy(tissue.astype(np.int64)), gen)
            out.append(image.numpy())
        return np.stack(out).astype(np.float32)


def _paint_slice(parts: list, size: int, back: float, shift: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue and labels on a size² 1 mm grid (anatomy upright), and each pixel's v."""
    centre = np.arange(size, dtype=np.float32) - (size - 1) / 2
    x, y = np.meshgrid(centre, centre)
    u, v = x - shift, y + back
    to_index = np.array([[1.0, 0.0, shift + (size - 1) / 2],
                         [0.0, 1.0, -back + (size - 1) / 2]])
    tissue, labels = paint_parts(parts, u, v, to_index, pad=2.0)
    return tissue.astype(np.uint8), labels.astype(np.uint8), v


def render_stack(seed: int, bottom_mm: float, top_mm: float, spacing_mm: float,
                 shapes: list[RealMuscles] | None = None, size: int = 384,
                 top_down: bool = False) -> SynthStack:
    """Slices every ``spacing_mm`` from ``bottom_mm`` to ``top_mm`` (z of :class:`SpineLayout`,
    0 at the top of the sacrum) of one synthetic person."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4242]))
    layout = draw_layout(rng)
    body = draw_synth_body(rng)
    real = shapes[int(rng.integers(len(shapes)))] if shapes else None
    shift = float(rng.normal(0, 6))
    z = np.arange(bottom_mm, top_mm + 1e-6, spacing_mm)
    labels, tissue, levels, disc = [], [], [], []
    for k, zk in enumerate(z):
        level, on_disc = layout.level_at(float(zk))
        at = replace(body, height=layout.height_at(float(zk)), through_disc=False)
        slice_seed = [int(seed), 4243, k]
        parts, marks = build_synth_parts(at, np.random.default_rng(slice_seed), real)
        back = 0.5 * size - body.fat - 12 - marks["back_muscle_edge_v"]
        t, lab, v = _paint_slice(parts, size, -back, shift)
        near = [j for j, c in enumerate(layout.centres)
                if abs(zk - c) < layout.thickness[j] / 2 + 20 * np.tan(
                    np.radians(abs(layout.tilt_deg[j])))]
        if near:
            j = near[0]
            dparts, _ = build_synth_parts(replace(at, through_disc=True),
                                          np.random.default_rng(slice_seed), real)
            dt, dl, _ = _paint_slice(dparts, size, -back, shift)
            plane = layout.centres[j] + v * np.tan(np.radians(layout.tilt_deg[j]))
            take = (dl == DI) & (np.abs(zk - plane) < layout.thickness[j] / 2)
            t[take], lab[take] = dt[take], dl[take]
        tissue.append(t)
        labels.append(lab)
        levels.append(level)
        disc.append(on_disc)
    order = np.arange(len(z))[::-1] if top_down else np.arange(len(z))
    return SynthStack(z[order], np.stack(labels)[order], np.stack(tissue)[order],
                      [levels[k] for k in order], np.asarray(disc)[order], layout,
                      bool(bottom_mm < 0), int(seed))


def draw_stack(seed: int, reach_sacrum: bool, shapes: list[RealMuscles] | None = None,
               size: int = 384) -> SynthStack:
    """A random stack: 3-6 mm slices, top between L3 and T12; reaching 50-100 mm into the
    sacrum, or starting anywhere from the L5 body up to the L3 body."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4241]))
    layout = draw_layout(np.random.default_rng(np.random.SeedSequence([int(seed), 4242])))
    c = layout.centres
    spacing = float(rng.uniform(3, 6))
    if reach_sacrum:
        bottom = float(rng.uniform(-100, -50))
    else:
        bottom = float(rng.uniform(c[0] + layout.thickness[0] / 2 + 1, c[2]))
    top = float(rng.uniform(max(c[2] + 10, bottom + 60), c[5] + 25))
    return render_stack(seed, bottom, top, spacing, shapes, size, bool(rng.random() < 0.5))


__all__ = ["SpineLayout", "SynthStack", "SynthTissue", "draw_layout", "draw_stack",
           "render_stack"]
