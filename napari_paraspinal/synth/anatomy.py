"""The structures of a synthetic axial slice at any lumbar level, L1-L2 to L5-S1.

Like :mod:`..phantom.anatomy` (same frame: u toward the patient's left, v posterior, mm,
origin at the centre of the disc or vertebral body; parts painted in order), but drawn to
vary as real scans vary rather than to be measured exactly:

- the level is a number ``height`` from 0 (L5-S1) to 4 (L1-L2) and sizes follow it: psoas
  small high and large low, multifidus large low, erector spinae large high, quadratus
  lumborum above L5, kidneys at L1-L3, liver (right) and spleen (left) at the top, iliac wings
  and gluteal muscles at the bottom;
- the slice passes through the disc (label DI) or the vertebral body (cortex and marrow,
  unlabelled, with pedicles in SP);
- multifidus and erector spinae are real outlines (:mod:`.real_shapes`) when given, else
  ellipses; body size, subcutaneous fat (5-60 mm), arms, bowel gas vary per case.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..core.labels import DI, ES_L, ES_R, MF_L, MF_R, PS_L, PS_R, SP
from ..phantom.anatomy import Part, Tissue
from ..phantom.shapes import Compound, Ellipse
from .real_shapes import RealMuscles

#: Level names by height (0 = L5-S1 ... 4 = L1-L2).
LEVEL_NAMES = ("L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2")


#: Tissue classes, each of which gets its own random intensity per case: the phantom's
#: tissues (same values) and the ones only synthetic training data need.
SynthTissue = IntEnum("SynthTissue", [(t.name, t.value) for t in Tissue] + [
    ("KIDNEY", 14), ("LIVER", 15), ("SPLEEN", 16), ("FASCIA", 17),
    ("MUSCLE_FAT", 18),  # fat inside the labelled muscles (infiltration, septa)
    ("CLUTTER_A", 19), ("CLUTTER_B", 20), ("CLUTTER_C", 21),  # bowel content, unnamed organs
])


N_TISSUES = len(SynthTissue)


@dataclass(frozen=True)
class SynthBody:
    """Whole-body sizes (mm) and the slice's place, drawn once per case."""

    height: float  # 0 = L5-S1 ... 4 = L1-L2
    through_disc: bool
    half_width: float
    half_depth: float
    fat: float
    wall: float
    arms: bool


def draw_synth_body(rng: np.random.Generator, height: float | None = None) -> SynthBody:
    """Habitus from slim to obese; level uniform over L1-L2..L5-S1 unless given."""
    h = float(rng.uniform(0.0, 4.0)) if height is None else float(height)
    return SynthBody(
        height=h,
        through_disc=bool(rng.random() < 0.55),
        half_width=float(rng.uniform(105, 165)),
        half_depth=float(rng.uniform(80, 125)),
        fat=float(np.clip(rng.gamma(2.0, 9.0) + 4.0, 5.0, 60.0)),
        wall=float(rng.uniform(6, 15)),
        arms=bool(rng.random() < 0.25),
    )


def _interp(height: float, values: tuple[float, ...]) -> float:
    """A size factor given at the five levels, linear in between."""
    return float(np.interp(height, np.arange(len(values)), values))


def _j(rng: np.random.Generator, mm: float) -> float:
    return float(rng.normal(0.0, mm))


def _pair(name: str, right: Ellipse, tissue: int, labels: tuple[int, int],
          scale: float, rng: np.random.Generator) -> list[Part]:
    """Right (negative u) and left copies, each a little different."""
    parts = []
    for side, label in (("R", labels[0]), ("L", labels[1])):
        base = right if side == "R" else right.mirrored()
        s = scale * float(rng.uniform(0.9, 1.1))
        parts.append(Part(f"{name}_{side}", Ellipse(base.cx + _j(rng, 2), base.cy + _j(rng, 2),
                                                   base.a * s, base.b * s,
                                                   base.angle + _j(rng, 5), base.power),
                          tissue, label))
    return parts


def _bone(name: str, outer: Ellipse, label: int, cortex: float = 1.8) -> list[Part]:
    inner = Ellipse(outer.cx, outer.cy, max(outer.a - cortex, 0.6), max(outer.b - cortex, 0.6),
                    outer.angle, outer.power)
    return [Part(name, outer, SynthTissue.CORTEX, label),
            Part(f"{name}_marrow", inner, SynthTissue.MARROW, label)]


def _back_muscles(body: SynthBody, lamina: float, real: RealMuscles | None,
                  rng: np.random.Generator) -> tuple[list[Part], float, float]:
    """Erector spinae then multifidus (real outlines or ellipses), with their fat planes.

    Returns the parts, the posterior edge of the muscles (v) and their lateral reach (|u|).
    """
    h = body.height
    mf_scale = np.sqrt(_interp(h, (1.25, 1.0, 0.72, 0.45, 0.3)))
    es_scale = np.sqrt(_interp(h, (0.55, 1.0, 1.3, 1.45, 1.55)))
    size = float(rng.uniform(0.78, 1.18))
    aspect = float(rng.uniform(0.9, 1.1))
    parts: list[Part] = []
    anchor = (0.0, lamina + 1.5)
    reach, back = 0.0, anchor[1] + 20.0
    order = ((ES_R, "erector_spinae_R", es_scale), (ES_L, "erector_spinae_L", es_scale),
             (MF_R, "multifidus_R", mf_scale), (MF_L, "multifidus_L", mf_scale))
    if real is not None:
        for value, name, scale in order:
            s = size * scale * float(rng.uniform(0.93, 1.07))
            shape = real.shapes[value].placed(
                (0.0, 0.0), (s * aspect, s / aspect),
                (anchor[0] + _j(rng, 1.0), anchor[1] + _j(rng, 1.0)))
            # the plane between muscles: often invisible on real scans, a thin line at most
            if rng.random() > 0.35:
                fascia = float(rng.uniform(0.3, 1.5))
                tissue = SynthTissue.FAT if rng.random() < 0.5 else SynthTissue.FASCIA
                parts.append(Part(f"{name}_fascia", shape.grown(fascia), tissue))
            parts.append(Part(name, shape, SynthTissue.MUSCLE, value))
            u0, u1, _, v1 = shape.bbox()
            reach, back = max(reach, abs(u0), abs(u1)), max(back, v1)
        return parts, back, reach
    es = Ellipse(-42, anchor[1] + 10, 26, 20, -12)
    mf = Ellipse(-14, anchor[1] + 18, 11, 18, 6)
    for ell, (value, name, scale) in zip((es, es.mirrored(), mf, mf.mirrored()), order,
                                         strict=True):
        s = size * scale * float(rng.uniform(0.93, 1.07))
        e = Ellipse(ell.cx * s, anchor[1] + (ell.cy - anchor[1]) * s, ell.a * s * aspect,
                    ell.b * s / aspect, ell.angle + _j(rng, 5))
        parts += [Part(f"{name}_fat", e.grown(1.2), SynthTissue.FAT),
                  Part(name, e, SynthTissue.MUSCLE, value)]
        reach, back = max(reach, abs(e.cx) + e.a), max(back, e.cy + e.b)
    return parts, back, reach


def build_synth_parts(body: SynthBody, rng: np.random.Generator,
                      real: RealMuscles | None = None) -> tuple[list[Part], dict]:
    """The painted structures of one slice and where its landmarks are (mm)."""
    h = body.height
    disc = body.through_disc
    vb_a = 22 + 4 * (1 - h / 4) + _j(rng, 1.5)  # vertebral body half-width, larger low
    vb_b = 15 + 1.5 * (1 - h / 4) + _j(rng, 1.0)
    canal_y = vb_b + 7
    lamina = canal_y + 10
    muscles, back, reach = _back_muscles(body, lamina, real, rng)
    w = max(body.half_width, reach + 25.0)
    d = body.half_depth
    back += float(rng.uniform(0.5, 3.0))
    env = Ellipse(0.0, back - d, w, d, 0.0, float(rng.uniform(2.0, 2.8)))
    fat = body.fat
    parts: list[Part] = [
        Part("skin", env.grown(fat + 1.5), SynthTissue.SKIN),
        Part("subcutaneous_fat", env.grown(fat), SynthTissue.FAT),
        Part("abdominal_wall", env, SynthTissue.MUSCLE),
        Part("abdominal_cavity", env.grown(-body.wall),
             SynthTissue.FAT if rng.random() < 0.6 else SynthTissue.CLUTTER_A),
    ]
    parts += _organs(env, body, rng)
    parts += _bowel(env, body, rng)
    parts.append(Part("posterior_fat", Ellipse(0, back - 30, 0.7 * w, 40, 0, 3.0),
                      SynthTissue.FAT))
    if h > 0.7:  # quadratus lumborum, larger higher
        ql = Ellipse(-(vb_a + 42), 12, 13 + 4 * min(h, 3) / 3, 9, -30)
        parts += _pair("quadratus_lumborum", ql, SynthTissue.MUSCLE, (0, 0), 1.0, rng)
    if h < 1.3:  # pelvis: iliac wings, gluteus, iliacus
        low = 1.3 - h
        parts += _pair("gluteus", Ellipse(-0.72 * w, back - 32, 18 * low + 6, 24, 35),
                       SynthTissue.MUSCLE, (0, 0), 1.0, rng)
        parts += _pair("iliacus", Ellipse(-0.5 * w - 4, -6, 10, 22, -20), SynthTissue.MUSCLE,
                       (0, 0), min(1.0, low * 1.5), rng)
        for side, sign in (("R", -1), ("L", 1)):
            parts += _bone(f"iliac_wing_{side}", Ellipse(sign * (0.5 * w + 10), 16, 5.5,
                                                         34 * min(1.0, low * 1.2), sign * 25), 0)
    ps_scale = np.sqrt(_interp(h, (1.05, 1.0, 0.78, 0.5, 0.28)))
    ps = Ellipse(-(vb_a + 14), -6 - 8 * (1 - min(h, 1)), 15, 23, 25)
    for part in _pair("psoas", ps, SynthTissue.MUSCLE, (PS_R, PS_L),
                      ps_scale * float(rng.uniform(0.8, 1.2)), rng):
        parts += [Part(f"{part.name}_fat", part.shape.grown(1.5), SynthTissue.FAT), part]
    parts += muscles
    parts += _spine(vb_a, vb_b, canal_y, lamina, back, disc, h, rng)
    parts += _vessels(vb_b, h, rng)
    if body.arms:
        parts += _arms(env, fat, rng)
    parts.append(Part("subcutaneous_fat_outer", Compound(env.grown(fat), (env,)),
                      SynthTissue.FAT))
    parts.append(Part("skin_outer", Compound(env.grown(fat + 1.5), (env.grown(fat),)),
                      SynthTissue.SKIN))
    landmarks = {"back_muscle_edge_v": back, "skin_v": back + fat + 1.5, "half_width": w,
                 "lamina_v": lamina}
    return parts, landmarks


def _spine(vb_a: float, vb_b: float, canal_y: float, lamina: float, back: float, disc: bool,
           h: float, rng: np.random.Generator) -> list[Part]:
    """Disc or vertebral body, canal, and the posterior elements (SP)."""
    parts: list[Part] = []
    if disc:
        notch = Ellipse(0, vb_b + 4, 10, 8)
        parts.append(Part("annulus", Compound(Ellipse(0, 0, vb_a, vb_b), (notch,)),
                          SynthTissue.ANNULUS, DI))
        nucleus = SynthTissue.NUCLEUS if rng.random() > 0.25 else SynthTissue.ANNULUS
        parts.append(Part("nucleus", Ellipse(0, 1, vb_a * 0.5, vb_b * 0.48), nucleus, DI))
    else:
        parts += _bone("vertebral_body", Ellipse(0, 0, vb_a, vb_b, 0, 2.3), 0, cortex=1.5)
        for sign in (-1, 1):  # pedicles join the body to the laminae
            parts += _bone("pedicle", Ellipse(sign * 13, canal_y, 5, 9, sign * 10), SP, 1.2)
    parts.append(Part("canal", Ellipse(0, canal_y, 11, 7.5), SynthTissue.CSF))
    for sign in (-1, 1):
        parts.append(Part("nerve_root", Ellipse(sign * 6, canal_y - 1, 2.2, 2.2),
                          SynthTissue.NERVE))
    for side, sign in (("R", -1), ("L", 1)):
        if disc:
            parts += _bone(f"facet_{side}", Ellipse(sign * 18, canal_y + 3, 6.5, 9.5,
                                                    sign * 30), SP)
        parts += _bone(f"lamina_{side}", Ellipse(sign * 8, lamina, 9, 3.8, -sign * 35), SP)
        if not disc and rng.random() < 0.7:
            length = 14 + 6 * min(h, 3) / 3
            parts += _bone(f"transverse_{side}", Ellipse(sign * (18 + length), canal_y - 2,
                                                         length, 3.5, -sign * 8), SP)
    tip = back - float(rng.uniform(3, 12))
    half = max((tip - lamina) / 2, 6.0)
    parts += _bone("spinous", Ellipse(_j(rng, 0.8), lamina + half, float(rng.uniform(3, 4.5)),
                                      half, _j(rng, 3), 4), SP)
    return parts


def _vessels(vb_b: float, h: float, rng: np.random.Generator) -> list[Part]:
    """Aorta and cava above L4, iliac vessels below."""
    if h > 1.5:
        shapes = [Ellipse(-4 + _j(rng, 3), -vb_b - 12, 10, 10),
                  Ellipse(22 + _j(rng, 3), -vb_b - 8, 12, 8)]
    else:
        shapes = [Ellipse(-14, -vb_b - 10, 5, 5), Ellipse(14, -vb_b - 10, 5, 5),
                  Ellipse(-20, -vb_b - 4, 8, 6), Ellipse(20, -vb_b - 4, 8, 6)]
    # the aorta lies left of the midline: mirror cava/aorta (u to the patient's left)
    return [Part("vessel", Ellipse(-s.cx, s.cy, s.a, s.b, s.angle), SynthTissue.VESSEL)
            for s in shapes]


def _organs(env: Ellipse, body: SynthBody, rng: np.random.Generator) -> list[Part]:
    """Kidneys at L1-L3, liver on the right and spleen on the left at the top."""
    h, parts = body.height, []
    if h > 2.2:
        size = min(1.0, (h - 2.2) / 1.2)
        for sign in (-1, 1):
            kidney = Ellipse(sign * float(rng.uniform(55, 75)), float(rng.uniform(-20, 5)),
                             22 * size + 8, 32 * size + 8, sign * float(rng.uniform(20, 45)))
            parts += [Part("perirenal_fat", kidney.grown(4), SynthTissue.FAT),
                      Part("kidney", kidney, SynthTissue.KIDNEY)]
    if h > 2.8:
        cap = env.grown(-body.wall - 2)
        liver = Ellipse(-0.55 * cap.a, cap.cy - 0.1 * cap.b, 0.5 * cap.a, 0.55 * cap.b,
                        _j(rng, 10))
        parts.append(Part("liver", liver, SynthTissue.LIVER))
        if h > 3.4:
            spleen = Ellipse(0.7 * cap.a, cap.cy + 0.2 * cap.b, 0.22 * cap.a, 0.3 * cap.b, 30)
            parts.append(Part("spleen", spleen, SynthTissue.SPLEEN))
    return parts


def _bowel(env: Ellipse, body: SynthBody, rng: np.random.Generator) -> list[Part]:
    """Bowel loops (gas, fluid or other content) crowding the abdomen, and smaller clutter.

    Real abdomens are busy: a network trained on a plain one fires on every loop of bowel.
    """
    contents = (SynthTissue.BOWEL_GAS, SynthTissue.BOWEL_FLUID, SynthTissue.CLUTTER_A,
                SynthTissue.CLUTTER_B, SynthTissue.CLUTTER_C)
    weights = np.array([0.25, 0.3, 0.15, 0.15, 0.15])
    parts = []
    front = env.cy - 0.8 * env.b
    for _ in range(int(rng.integers(10, 32))):
        r = float(rng.uniform(5, 26))
        cx = float(rng.uniform(-0.8, 0.8) * max(env.a - body.wall - r, 5))
        cy = float(rng.uniform(front, max(front, -30.0)))
        shape = Ellipse(cx, cy, r, r * rng.uniform(0.45, 1.0), float(rng.uniform(0, 180)),
                        float(rng.uniform(1.6, 2.6)))
        content = contents[int(rng.choice(len(contents), p=weights))]
        if rng.random() < 0.7:
            parts.append(Part("bowel_wall", shape, SynthTissue.BOWEL_WALL))
            shape = shape.grown(-float(rng.uniform(1.0, 3.0)))
        parts.append(Part("bowel", shape, content))
    return parts


def _arms(env: Ellipse, fat: float, rng: np.random.Generator) -> list[Part]:
    """Forearms or upper arms beside the body."""
    parts = []
    for sign in (-1, 1):
        cx = sign * (env.a + fat + float(rng.uniform(25, 55)))
        cy = env.cy + float(rng.uniform(-0.3, 0.3)) * env.b
        r = float(rng.uniform(30, 45))
        arm = Ellipse(cx, cy, r, r * float(rng.uniform(0.7, 1.0)), float(rng.uniform(0, 180)))
        parts += [Part("arm_skin", arm.grown(1.5), SynthTissue.SKIN),
                  Part("arm_fat", arm, SynthTissue.FAT),
                  Part("arm_muscle", arm.grown(-float(rng.uniform(5, 15))), SynthTissue.MUSCLE)]
        parts += _bone("humerus", Ellipse(cx, cy, 9, 9), 0, 2.5)
    return parts
