"""Where the structures of an axial lumbar slice are, per level, with random variation.

All sizes are millimetres in the anatomical frame (u toward the patient's left, v toward
posterior, origin at the disc centre). Each part names its tissue (which decides its
intensity for a contrast) and its label (0 for unlabelled look-alikes such as quadratus
lumborum, iliacus, gluteal muscles, the abdominal wall, iliac wings and sacral ala).
Parts are painted in list order, later over earlier.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..core.labels import DI, ES_L, ES_R, MF_L, MF_R, PS_L, PS_R, SP
from .shapes import Compound, Ellipse, Shape


class Tissue(IntEnum):
    """Tissue classes with their own MR intensities."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    SKIN = 3
    CSF = 4
    NUCLEUS = 5
    ANNULUS = 6
    CORTEX = 7
    MARROW = 8
    NERVE = 9
    VESSEL = 10
    BOWEL_GAS = 11
    BOWEL_FLUID = 12
    BOWEL_WALL = 13


@dataclass(frozen=True)
class Part:
    """One painted structure."""

    name: str
    shape: Shape
    tissue: Tissue
    label: int = 0


@dataclass(frozen=True)
class Body:
    """Whole-body sizes of one phantom (mm), drawn once per case."""

    half_width: float  # envelope of the muscles, left-right
    half_depth: float  # envelope, anterior-posterior
    fat: float  # subcutaneous fat thickness
    wall: float  # abdominal wall muscle thickness


def draw_body(rng: np.random.Generator) -> Body:
    """Body habitus: from slim to obese, wide or deep."""
    return Body(
        half_width=float(rng.uniform(112, 145)),
        half_depth=float(rng.uniform(88, 108)),
        fat=float(rng.gamma(3.0, 5.0) + 5.0),
        wall=float(rng.uniform(7, 14)),
    )


def _jit(rng: np.random.Generator, mm: float) -> float:
    return float(rng.normal(0.0, mm))


def _bilateral(name: str, right: Ellipse, tissue: Tissue, labels: tuple[int, int],
               scales: tuple[float, float], rng: np.random.Generator) -> list[Part]:
    """Right and left copies of a structure (right at negative u), each scaled on its own."""
    parts = []
    for side, label, scale in (("R", labels[0], scales[0]), ("L", labels[1], scales[1])):
        base = right if side == "R" else right.mirrored()
        shape = Ellipse(base.cx + _jit(rng, 1.5), base.cy + _jit(rng, 1.5), base.a * scale,
                        base.b * scale, base.angle + _jit(rng, 4), base.power)
        parts.append(Part(f"{name}_{side}", shape, tissue, label))
    return parts


def _muscle_scales(rng: np.random.Generator, atrophy: float) -> tuple[float, float]:
    """Per-side size factors: shared atrophy and a little asymmetry."""
    base = atrophy * rng.uniform(0.9, 1.1)
    asym = rng.normal(0.0, 0.05)
    return float(base * (1 - asym)), float(base * (1 + asym))


def _bone(name: str, outer: Ellipse, label: int, cortex: float = 1.8) -> list[Part]:
    """Cortical rim with marrow inside."""
    inner = Ellipse(outer.cx, outer.cy, max(outer.a - cortex, 0.6), max(outer.b - cortex, 0.6),
                    outer.angle, outer.power)
    return [Part(name, outer, Tissue.CORTEX, label), Part(f"{name}_marrow", inner,
                                                          Tissue.MARROW, label)]


def build_parts(level: str, body: Body, rng: np.random.Generator) -> list[Part]:
    """The painted structures of one slice at ``level`` ("L4-L5" or "L5-S1")."""
    if level not in ("L4-L5", "L5-S1"):
        raise ValueError(f"level must be 'L4-L5' or 'L5-S1', got {level!r}")
    l45 = level == "L4-L5"
    w, d = body.half_width, body.half_depth
    back = float(rng.uniform(60, 70))  # posterior edge of the back muscles
    env = Ellipse(0.0, back - d, w, d, 0.0, 2.4)
    parts: list[Part] = [
        Part("skin", env.grown(body.fat + 1.5), Tissue.SKIN),
        Part("subcutaneous_fat", env.grown(body.fat), Tissue.FAT),
        Part("abdominal_wall", env, Tissue.MUSCLE),
        Part("abdominal_cavity", env.grown(-body.wall), Tissue.FAT),
    ]
    parts += _bowel(env, body, rng)
    parts.append(Part("posterior_fat", Ellipse(0, back - 22, 0.7 * w, 36, 0, 3.0), Tissue.FAT))

    atrophy = float(rng.uniform(0.75, 1.1))
    # unlabelled muscles that look like the labelled ones
    if l45:
        ql = Ellipse(-68, 14, 17, 10, -30)
        parts += _bilateral("quadratus_lumborum", ql, Tissue.MUSCLE, (0, 0),
                            _muscle_scales(rng, atrophy), rng)
    else:
        parts += _bilateral("gluteus", Ellipse(-0.72 * w, back - 32, 20, 26, 35), Tissue.MUSCLE,
                            (0, 0), _muscle_scales(rng, 1.0), rng)
        parts += _bilateral("iliacus", Ellipse(-0.5 * w - 4, -6, 10, 22, -20), Tissue.MUSCLE,
                            (0, 0), _muscle_scales(rng, 1.0), rng)
        for side, sign in (("R", -1), ("L", 1)):
            wing = Ellipse(sign * (0.5 * w + 10), 16, 5.5, 34, sign * 25)
            parts += _bone(f"iliac_wing_{side}", wing, 0)

    # psoas with a fat plane around it
    psoas = (Ellipse(-38, -6, 17, 25, 25) if l45 else Ellipse(-46, -18, 15, 21, 35))
    for part in _bilateral("psoas", psoas, Tissue.MUSCLE, (PS_R, PS_L),
                           _muscle_scales(rng, atrophy * rng.uniform(0.85, 1.15)), rng):
        parts += [Part(f"{part.name}_fat", part.shape.grown(1.5), Tissue.FAT), part]

    # erector spinae, then multifidus over it, separated by a thin fat line (fascia)
    es = Ellipse(-44, back - 24, 28, 22, -12) if l45 else Ellipse(-40, back - 17, 20, 15, -15)
    mf = Ellipse(-15, back - 22, 12, 20, 6) if l45 else Ellipse(-17, back - 23, 15, 22, 6)
    es_parts = _bilateral("erector_spinae", es, Tissue.MUSCLE, (ES_R, ES_L),
                          _muscle_scales(rng, atrophy), rng)
    mf_parts = _bilateral("multifidus", mf, Tissue.MUSCLE, (MF_R, MF_L),
                          _muscle_scales(rng, atrophy * rng.uniform(0.9, 1.1)), rng)
    for part in es_parts:
        parts += [Part(f"{part.name}_fat", part.shape.grown(1.2), Tissue.FAT), part]
    for part in mf_parts:
        parts += [Part(f"{part.name}_fat", part.shape.grown(1.2), Tissue.FAT), part]

    # disc: annulus (kidney-shaped at L4-L5) and nucleus
    disc_a, disc_b = (25, 17) if l45 else (27, 16)
    disc_a *= rng.uniform(0.9, 1.1)
    disc_b *= rng.uniform(0.9, 1.1)
    notch = Ellipse(0, disc_b + (4 if l45 else 6), 10, 8)
    parts.append(Part("annulus", Compound(Ellipse(0, 0, disc_a, disc_b), (notch,)),
                      Tissue.ANNULUS, DI))
    nucleus = Ellipse(0, 1, disc_a * 0.5, disc_b * 0.48)
    parts.append(Part("nucleus", nucleus, Tissue.NUCLEUS if rng.random() > 0.2
                      else Tissue.ANNULUS, DI))  # degenerated discs lose their bright nucleus
    if not l45 and rng.random() < 0.6:
        for side, sign in (("R", -1), ("L", 1)):
            parts += _bone(f"sacral_ala_{side}", Ellipse(sign * 36, 10, 10, 6, sign * 15), 0)

    # spinal canal with CSF and nerve roots
    canal_y = disc_b + 7
    parts.append(Part("canal", Ellipse(0, canal_y, 11, 7.5), Tissue.CSF))
    for sign in (-1, 1):
        parts.append(Part("nerve_root", Ellipse(sign * 7, canal_y - 2, 2.2, 2.2), Tissue.NERVE))
        parts.append(Part("exiting_root", Ellipse(sign * 20, disc_b - 2, 2.5, 2.5),
                          Tissue.NERVE))

    # posterior elements (label SP): facets, laminae, spinous process, transverse processes
    for side, sign in (("R", -1), ("L", 1)):
        parts += _bone(f"facet_{side}", Ellipse(sign * (17 if l45 else 19), canal_y + 3, 6.5,
                                                9.5, sign * 30), SP)
        parts += _bone(f"lamina_{side}", Ellipse(sign * 8, canal_y + 10, 9, 3.8, -sign * 35), SP)
        if l45 and rng.random() < 0.5:
            parts += _bone(f"transverse_{side}", Ellipse(sign * 31, canal_y - 3, 12, 3.5,
                                                         -sign * 8), SP)
    spinous_len = (13 if l45 else 10) * rng.uniform(0.85, 1.15)
    parts += _bone("spinous", Ellipse(0, canal_y + 13 + spinous_len, 4.0, spinous_len, 0, 4), SP)

    # vessels (flow voids): the aorta has split into the common iliacs at L4
    if l45:
        vessels = [Ellipse(-9, -disc_b - 10, 5, 5), Ellipse(9, -disc_b - 10, 5, 5),
                   Ellipse(-16, -disc_b - 5, 9, 6), Ellipse(4, -disc_b - 4, 6, 4)]
    else:
        vessels = [Ellipse(-28, -disc_b - 14, 5, 5), Ellipse(28, -disc_b - 14, 5, 5),
                   Ellipse(-22, -disc_b - 6, 6, 5), Ellipse(22, -disc_b - 6, 6, 5)]
    parts += [Part("vessel", v, Tissue.VESSEL) for v in vessels]
    # muscles that reach past the muscle envelope (gluteus at L5-S1) lie under the fat
    # and skin, never over them
    parts.append(Part("subcutaneous_fat_outer", Compound(env.grown(body.fat), (env,)),
                      Tissue.FAT))
    parts.append(Part("skin_outer", Compound(env.grown(body.fat + 1.5),
                                             (env.grown(body.fat),)), Tissue.SKIN))
    return parts


def _bowel(env: Ellipse, body: Body, rng: np.random.Generator) -> list[Part]:
    """Bowel loops with a wall and gas or fluid content in the anterior abdomen."""
    parts = []
    for _ in range(int(rng.integers(8, 16))):
        r = float(rng.uniform(9, 24))
        cx = float(rng.uniform(-0.7, 0.7) * (env.a - body.wall - r))
        cy = float(rng.uniform(env.cy - 0.75 * env.b, -40))
        shape = Ellipse(cx, cy, r, r * rng.uniform(0.6, 1.0), float(rng.uniform(0, 180)))
        content = Tissue.BOWEL_GAS if rng.random() < 0.3 else Tissue.BOWEL_FLUID
        parts.append(Part("bowel_wall", shape, Tissue.BOWEL_WALL))
        parts.append(Part("bowel", shape.grown(-2.0), content))
    return parts
