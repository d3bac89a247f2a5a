"""Shape primitives evaluated on sub-pixel grids in the anatomical frame (mm).

The anatomical frame: u runs toward the patient's left, v toward posterior, the origin at
the centre of the intervertebral disc. Every primitive answers "which points are inside"
and knows its bounding box, so the generator only evaluates points near it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ellipse:
    """A (super)ellipse: centre, half-axes, rotation (degrees) and exponent (2 = ellipse)."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0
    power: float = 2.0

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        t = np.deg2rad(self.angle)
        du, dv = u - self.cx, v - self.cy
        x = (du * np.cos(t) + dv * np.sin(t)) / self.a
        y = (-du * np.sin(t) + dv * np.cos(t)) / self.b
        return np.abs(x) ** self.power + np.abs(y) ** self.power <= 1.0

    def bbox(self) -> tuple[float, float, float, float]:
        r = max(self.a, self.b) * (1.2 if self.power > 2 else 1.0)
        return self.cx - r, self.cx + r, self.cy - r, self.cy + r

    def mirrored(self) -> Ellipse:
        """The same shape on the other side of the midline."""
        return Ellipse(-self.cx, self.cy, self.a, self.b, -self.angle, self.power)

    def grown(self, mm: float) -> Ellipse:
        return Ellipse(self.cx, self.cy, self.a + mm, self.b + mm, self.angle, self.power)


@dataclass(frozen=True)
class Compound:
    """Points inside ``include`` but outside every ``exclude`` shape (e.g. a kidney disc)."""

    include: Ellipse
    exclude: tuple[Ellipse, ...] = ()

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        inside = self.include.contains(u, v)
        for shape in self.exclude:
            inside &= ~shape.contains(u, v)
        return inside

    def bbox(self) -> tuple[float, float, float, float]:
        return self.include.bbox()

    def mirrored(self) -> Compound:
        return Compound(self.include.mirrored(), tuple(s.mirrored() for s in self.exclude))


Shape = Ellipse | Compound
