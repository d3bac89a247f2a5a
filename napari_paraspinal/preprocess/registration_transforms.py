"""The transforms of atlas registration (:mod:`.registration`) that need no image: the affine
starting guesses from the body masks' moments, and conversions between similarity and affine
transforms."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk


def _moments(mask: np.ndarray, spacing: tuple[float, float],
             origin: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Centroid (x, y) and variance along x and y (mm², as ``np.cov``) of a 2-D mask given
    as (rows, cols).

    From the mask's row and column sums (the variances need no joint moment), much faster
    than listing the pixels."""
    centre, variance = np.zeros(2), np.zeros(2)
    for axis, counts in enumerate((mask.sum(0), mask.sum(1))):
        positions = origin[axis] + np.arange(counts.size) * spacing[axis]
        n = float(counts.sum())
        centre[axis] = counts @ positions / n
        variance[axis] = counts @ (positions - centre[axis]) ** 2 / (n - 1)
    return centre, variance


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def moments_initialisation(fixed_mask: np.ndarray, fixed_spacing: tuple[float, float],
                           fixed_origin: tuple[float, float], moving_mask: np.ndarray,
                           moving_spacing: tuple[float, float],
                           rotations_deg: tuple[float, ...] = (0.0,)
                           ) -> list[sitk.AffineTransform]:
    """Affine atlas→plane guesses from the two masks' centroids and spreads along x and y,
    one per starting rotation.

    The slice is already in canonical orientation (anterior up, patient's left to the
    right), so the remaining rotation is small and is tried from a few starts rather than
    taken from the principal axes, which swap when a body is scaled unevenly.
    """
    cf, varf = _moments(fixed_mask, fixed_spacing, fixed_origin)
    cm, varm = _moments(moving_mask, moving_spacing, (0.0, 0.0))
    scale = np.sqrt(varm / varf)
    cut_x = moving_mask[:, 0].any() or moving_mask[:, -1].any()
    cut_y = moving_mask[0].any() or moving_mask[-1].any()
    if cut_x and not cut_y:  # a body cut by the field of view: trust the uncut axis
        scale[0] = scale[1]
    elif cut_y and not cut_x:
        scale[1] = scale[0]
    starts = []
    for angle in rotations_deg:
        matrix = _rotation(math.radians(angle)) @ np.diag(scale)
        t = sitk.AffineTransform(2)
        t.SetCenter(tuple(float(c) for c in cf))
        t.SetMatrix(tuple(float(v) for v in matrix.ravel()))
        t.SetTranslation(tuple(float(v) for v in cm - cf))
        starts.append(t)
    return starts


def similarity_from(affine: sitk.AffineTransform) -> sitk.Similarity2DTransform:
    """The closest similarity transform (polar decomposition of the matrix)."""
    m = np.array(affine.GetMatrix()).reshape(2, 2)
    u, s, vt = np.linalg.svd(m)
    r = u @ vt
    t = sitk.Similarity2DTransform()
    t.SetCenter(affine.GetCenter())
    t.SetScale(float(np.sqrt(s.prod())))
    t.SetAngle(float(math.atan2(r[1, 0], r[0, 0])))
    t.SetTranslation(affine.GetTranslation())
    return t


def centred_affine(t: sitk.Transform) -> sitk.AffineTransform:
    """A similarity or affine transform as an AffineTransform with the same centre."""
    out = sitk.AffineTransform(2)
    out.SetCenter(t.GetCenter() if hasattr(t, "GetCenter") else (0.0, 0.0))
    out.SetMatrix(t.GetMatrix())
    out.SetTranslation(t.GetTranslation())
    return out
