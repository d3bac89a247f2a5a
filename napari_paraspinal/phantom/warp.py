"""A slice warped by a known affine transform, to measure how well registration recovers it.

The warp acts on the canonical plane (x toward the patient's left, y posterior, mm, origin
0): a rotation, a scale per axis and a shift about the centre of the field of view. The
output grid holds the whole warped field of view with a margin and keeps the input's
spacing; where the warped field of view does not reach, the background is Rayleigh noise
at the phantom's own noise level, as in air on a magnitude image.

The grid is sized from the warped corners, not as a fixed multiple of the input: with a
grid 1.45 times the input, a body scaled by 1.35 and shifted by 27 mm was cut by the grid,
so the warped slice showed less of the body than the slice it came from. Its registration
then differs by 3.7 mm (phantoms 830003 and 850013), which measures the lost anatomy, not
the registration; with the whole field of view kept, both are recovered within 0.2 mm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.geometry import Geometry, SliceImage
from ..core.orientation import canonical_reorientation


@dataclass
class Warp:
    """The warp applied: ``transform`` maps an input plane point to its output plane point."""

    rotation_deg: float
    scale: tuple[float, float]
    shift_mm: tuple[float, float]
    transform: sitk.AffineTransform


def random_warp(image: SliceImage, rng: np.random.Generator, noise_sigma: float,
                rotation_deg: float = 20.0, scale: tuple[float, float] = (0.7, 1.4),
                shift_mm: float = 30.0, margin_mm: float = 20.0) -> tuple[SliceImage, Warp]:
    """``image`` warped by a random affine (rotation ±, scale per axis, shift ±), on a grid
    that holds all of the warped field of view and ``margin_mm`` of air around it."""
    r = canonical_reorientation(image.geometry)
    data = r.apply(np.asarray(image.data, np.float32))
    spacing = image.geometry.spacing
    sx, sy = (spacing[1], spacing[0]) if r.transpose else (spacing[0], spacing[1])
    rows, cols = data.shape
    angle = float(rng.uniform(-rotation_deg, rotation_deg))
    scales = rng.uniform(*scale, 2)
    shift = rng.uniform(-shift_mm, shift_mm, 2)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    matrix = np.array([[c, -s], [s, c]]) @ np.diag(scales)
    centre_in = np.array([(cols - 1) / 2 * sx, (rows - 1) / 2 * sy])
    corners = np.array([[x, y] for x in (-0.5 * sx, (cols - 0.5) * sx)
                        for y in (-0.5 * sy, (rows - 0.5) * sy)])
    warped_corners = (corners - centre_in) @ matrix.T + centre_in + shift
    low, high = warped_corners.min(0) - margin_mm, warped_corners.max(0) + margin_mm
    out_cols, out_rows = (int(math.ceil(v)) for v in (high - low) / (sx, sy))
    forward = sitk.AffineTransform(2)
    forward.SetMatrix(tuple(matrix.ravel()))
    forward.SetCenter(tuple(centre_in))
    forward.SetTranslation(tuple(shift - low))

    plane = sitk.GetImageFromArray(data)
    plane.SetSpacing((sx, sy))
    ref = sitk.Image(out_cols, out_rows, sitk.sitkFloat32)
    ref.SetSpacing((sx, sy))
    inverse = forward.GetInverse()
    warped = sitk.GetArrayFromImage(sitk.Resample(plane, ref, inverse, sitk.sitkLinear, 0.0))
    inside = sitk.GetArrayFromImage(sitk.Resample(plane * 0 + 1, ref, inverse,
                                                  sitk.sitkNearestNeighbor, 0.0)) > 0
    air = rng.rayleigh(max(noise_sigma, 1e-6), warped.shape)
    warped = np.where(inside, warped, air).astype(np.float32)
    geometry = Geometry(shape=warped.shape, spacing=(sx, sy, spacing[2]),
                        origin=(0.0, 0.0, image.geometry.origin[2]))
    out = SliceImage(warped, geometry, source=f"{image.source} warped")
    return out, Warp(angle, (float(scales[0]), float(scales[1])),
                     (float(shift[0]), float(shift[1])), forward)


def recovery_error(probabilities: np.ndarray, before: sitk.Transform, after: sitk.Transform,
                   warp: Warp) -> float:
    """Mean distance (mm) between ``after(p)`` and ``warp(before(p))`` over the centroids of
    the atlas's labels (``probabilities`` C×256×256 at 1 mm, centred): zero when registering
    the warped slice (``after``) recovers exactly the warp applied to the unwarped one's."""
    errors = []
    centre = (probabilities.shape[-1] - 1) / 2
    for prob in probabilities[1:]:
        ys, xs = np.nonzero(prob > 0.5)
        if len(xs):
            p = (float(xs.mean() - centre), float(ys.mean() - centre))
            expected = warp.transform.TransformPoint(before.TransformPoint(p))
            errors.append(float(np.hypot(*np.subtract(after.TransformPoint(p), expected))))
    return float(np.mean(errors))
