"""Real multifidus and erector spinae outlines as shapes for the synthetic training data.

The outlines come from label maps drawn by people on real T2w slices at L4-L5 (one per
patient, no images; see ``shared/data/README.md``). Each map is turned into four signed
distance maps (mm, negative inside) in the anatomical frame: u toward the patient's left,
v toward posterior, origin at the *anchor*: the midline between the two multifidus centres,
at the multifidus' anterior edge (where they lie on the laminae). The generator places the
anchor behind its laminae, so the real muscles sit on a synthetic spine; a signed distance
lets a shape grow or shrink by millimetres (fat planes, fascia) without redrawing it.

Why real outlines: a network trained only on the generator's ellipses learns ellipses; real
muscles are lobed, asymmetric and vary in their MF/ES proportion from patient to patient.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..core.labels import ES_L, ES_R, MF_L, MF_R

#: Pixel size of the MRI515 label maps (mm), as their authors' notebooks use it.
MRI515_PIXEL_MM = 0.6875
#: MRI515 value → our label. The maps are in the radiological view (image left = patient
#: right), so column index already runs toward the patient's left, row toward posterior.
MRI515_VALUES = {50: ES_R, 100: MF_R, 150: MF_L, 200: ES_L}
MUSCLES = (MF_L, MF_R, ES_L, ES_R)


@dataclass(frozen=True)
class DistanceShape:
    """A shape given by a signed distance map (mm, < 0 inside) on a regular grid.

    ``origin`` is the (u, v) of pixel (0, 0), ``spacing`` the pixel size (mm); ``scale``
    (su, sv) stretches the shape about ``pivot``; ``offset`` grows it (mm, negative shrinks).
    """

    distance: np.ndarray
    origin: tuple[float, float]
    spacing: float
    pivot: tuple[float, float] = (0.0, 0.0)
    scale: tuple[float, float] = (1.0, 1.0)
    shift: tuple[float, float] = (0.0, 0.0)
    offset: float = 0.0

    def _lookup(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        pu, pv = self.pivot
        uu = (u - self.shift[0] - pu) / self.scale[0] + pu
        vv = (v - self.shift[1] - pv) / self.scale[1] + pv
        col = np.rint((uu - self.origin[0]) / self.spacing).astype(np.int64)
        row = np.rint((vv - self.origin[1]) / self.spacing).astype(np.int64)
        rows, cols = self.distance.shape
        ok = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
        out = np.full(u.shape, np.inf, np.float32)
        out[ok] = self.distance[row[ok], col[ok]]
        return out * min(self.scale)

    def contains(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return self._lookup(u, v) <= self.offset

    def bbox(self) -> tuple[float, float, float, float]:
        inside = np.nonzero(self.distance <= self.offset)
        if not inside[0].size:
            return (0.0, 0.0, 0.0, 0.0)
        pad = max(self.offset, 0.0) + self.spacing
        u = self.origin[0] + inside[1] * self.spacing
        v = self.origin[1] + inside[0] * self.spacing
        pu, pv = self.pivot
        su, sv = self.scale
        u0, u1 = (u.min() - pu) * su + pu, (u.max() - pu) * su + pu
        v0, v1 = (v.min() - pv) * sv + pv, (v.max() - pv) * sv + pv
        return (float(u0 + self.shift[0] - pad * su), float(u1 + self.shift[0] + pad * su),
                float(v0 + self.shift[1] - pad * sv), float(v1 + self.shift[1] + pad * sv))

    def grown(self, mm: float) -> DistanceShape:
        return DistanceShape(self.distance, self.origin, self.spacing, self.pivot, self.scale,
                             self.shift, self.offset + mm)

    def placed(self, pivot: tuple[float, float], scale: tuple[float, float],
               shift: tuple[float, float]) -> DistanceShape:
        """The same outline stretched by ``scale`` about ``pivot`` and moved by ``shift``."""
        return DistanceShape(self.distance, self.origin, self.spacing, pivot, scale, shift,
                             self.offset)


@dataclass(frozen=True)
class RealMuscles:
    """The four outlines of one patient, anchored (see the module doc)."""

    source: str
    shapes: dict[int, DistanceShape]


def signed_distance(mask: np.ndarray, spacing: float) -> np.ndarray:
    """Signed Euclidean distance (mm) to the mask's boundary: negative inside."""
    mask = np.asarray(mask, bool)
    outside = ndi.distance_transform_edt(~mask) * spacing
    inside = ndi.distance_transform_edt(mask) * spacing
    return (outside - inside + np.where(mask, 0.5, -0.5) * spacing).astype(np.float32)


def muscles_from_map(label_map: np.ndarray, source: str,
                     pixel_mm: float = MRI515_PIXEL_MM) -> RealMuscles | None:
    """The anchored outlines of one MRI515-style map; None if a muscle is missing."""
    ours = np.zeros(label_map.shape, np.uint8)
    for theirs, value in MRI515_VALUES.items():
        ours[label_map == theirs] = value
    masks = {}
    for value in MUSCLES:
        labelled, n = ndi.label(ours == value)
        if n == 0:
            return None
        sizes = ndi.sum(np.ones_like(labelled), labelled, range(1, n + 1))
        masks[value] = labelled == 1 + int(np.argmax(sizes))
    centres = {v: ndi.center_of_mass(m) for v, m in masks.items()}
    mid_col = 0.5 * (centres[MF_L][1] + centres[MF_R][1])
    mf_rows = np.nonzero(masks[MF_L] | masks[MF_R])[0]
    anchor_row = float(np.percentile(mf_rows, 2))
    union = np.zeros(ours.shape, bool)
    for m in masks.values():
        union |= m
    rows, cols = np.nonzero(union)
    pad = 12
    r0, r1 = max(rows.min() - pad, 0), min(rows.max() + pad + 1, ours.shape[0])
    c0, c1 = max(cols.min() - pad, 0), min(cols.max() + pad + 1, ours.shape[1])
    origin = ((c0 - mid_col) * pixel_mm, (r0 - anchor_row) * pixel_mm)
    shapes = {v: DistanceShape(signed_distance(m[r0:r1, c0:c1], pixel_mm), origin, pixel_mm)
              for v, m in masks.items()}
    return RealMuscles(source, shapes)


def load_real_muscles(folder: str | os.PathLike[str]) -> list[RealMuscles]:
    """Every usable label map (``*.png``) of ``folder``, in file-name order."""
    from PIL import Image

    out = []
    for path in sorted(Path(folder).glob("*.png")):
        with Image.open(path) as img:
            label_map = np.asarray(img.convert("L"))
        muscles = muscles_from_map(label_map, path.name)
        if muscles is not None:
            out.append(muscles)
    return out


def default_shapes_dir() -> Path:
    """``shared/data/mri515_t2_labels`` beside the repository (or ``PARASPINAL_SHAPES``)."""
    env = os.environ.get("PARASPINAL_SHAPES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "mri515_t2_labels"
