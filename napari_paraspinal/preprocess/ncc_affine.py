"""Affine refinement that converges: squared normalised cross-correlation and L-BFGS.

The last step of registration moves an affine atlas→plane transform to the nearest maximum
of NCC² between the atlas mean image and the slice, inside the region of the labelled
structures. ITK's gradient descent (learning rate estimated each iteration) stopped short
of that maximum, at a place that depended on where it started: a slice and the same slice
warped by a known affine ended up millimetres apart at the structures. SciPy's L-BFGS-B on the
exact gradient of bilinear sampling goes all the way, so the result hardly depends on the
start (``paraspinal bench register`` and the README have the figures).

NCC² rather than NCC: it does not care whether fat or muscle is the bright one (Dixon
water images against a T2w atlas).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from ..core.shared_setting import SharedSetting

RADIUS_MM = 64.0  # matrix entries are scaled to the displacement they cause at this radius
_ONE_BLAS_THREAD = SharedSetting(lambda: threadpool_limits(1, user_api="blas"),
                                 lambda limiter: limiter.restore_original_limits())


@dataclass(frozen=True)
class _Level:
    """One smoothing level: the fixed samples (physical x, y and values) and the smoothed
    moving image with a border of zeros."""

    points: np.ndarray
    values: np.ndarray
    image: np.ndarray


@dataclass(frozen=True)
class NCCLevels:
    """What every start of one registration shares: the fixed samples and the smoothed
    moving image per level, made once per registration."""

    levels: tuple[_Level, ...]
    origin: np.ndarray
    spacing: np.ndarray


def fixed_levels(fixed: sitk.Image, region: np.ndarray,
                 smoothing_mm: Sequence[float] = (4.0, 2.0, 0.0),
                 steps: Sequence[int] = (4, 2, 1)) -> list[tuple[np.ndarray, np.ndarray]] | str:
    """Per level, the physical points (x, y) and values of every ``steps``-th pixel of
    ``region`` in ``fixed`` smoothed by ``smoothing_mm`` (Gaussian σ in mm); or a few words
    on why there is nothing to refine on. Depends on the atlas alone, so it can be kept."""
    levels = []
    for sigma, step in zip(smoothing_mm, steps, strict=True):
        points, values = _fixed_samples(fixed, region, sigma, step)
        if len(values) < 10 or values.std() == 0:
            return "no structure region to refine on"
        levels.append((points, values))
    return levels


def ncc_levels(fixed: list[tuple[np.ndarray, np.ndarray]], moving: sitk.Image,
               smoothing_mm: Sequence[float] = (4.0, 2.0, 0.0)) -> NCCLevels:
    """Prepare :func:`refine_prepared` from :func:`fixed_levels` and the slice, smoothed per
    level (the levels at the same time: ITK releases the GIL)."""
    with ThreadPoolExecutor(len(smoothing_mm)) as pool:
        images = list(pool.map(lambda sigma: np.pad(_smoothed(moving, sigma), 1).astype(
            np.float64), smoothing_mm))  # zeros around: sampling fades out continuously
    levels = tuple(_Level(points, values, image)
                   for (points, values), image in zip(fixed, images, strict=True))
    return NCCLevels(levels, np.array(moving.GetOrigin()), np.array(moving.GetSpacing()))


def refine_affine_ncc(fixed: sitk.Image, region: np.ndarray, moving: sitk.Image,
                      start: sitk.Transform, smoothing_mm: Sequence[float] = (4.0, 2.0, 0.0),
                      steps: Sequence[int] = (4, 2, 1), max_iterations: int = 100,
                      max_rescale: float = 1.5) -> sitk.AffineTransform | str:
    """The affine fixed→moving transform near ``start`` that maximises NCC² over ``region``.

    ``fixed`` and ``moving`` are 2-D images with identity direction; ``region`` is a mask on
    the fixed grid. One L-BFGS run per level (see :func:`fixed_levels`). Returns the
    transform, or a few words on why there is none: no overlap, not finite, or a change of
    scale along some axis by more than ``max_rescale`` (on a slice that fits the atlas
    poorly, NCC² can be raised by collapsing the slice onto a few pixels).
    """
    samples = fixed_levels(fixed, region, smoothing_mm, steps)
    if isinstance(samples, str):
        return samples
    return refine_prepared(ncc_levels(samples, moving, smoothing_mm), start, max_iterations,
                           max_rescale)


def refine_prepared(prepared: NCCLevels, start: sitk.Transform, max_iterations: int = 100,
                    max_rescale: float = 1.5) -> sitk.AffineTransform | str:
    """:func:`refine_affine_ncc` on levels made once by :func:`ncc_levels` (shared by all
    starts of a registration)."""
    centre = np.array(start.GetCenter() if hasattr(start, "GetCenter") else (0.0, 0.0))
    matrix0 = np.array(start.GetMatrix(), float).reshape(2, 2)
    shift0 = np.array(start.GetTranslation(), float)
    u = np.zeros(6)
    for level in prepared.levels:
        objective = _Objective(level.points - centre, level.values, centre, matrix0, shift0,
                               level.image, prepared.origin, prepared.spacing)
        value, u = _lbfgs(objective, u, max_iterations)
        if not np.isfinite(value) or not np.isfinite(u).all():
            return "NCC refinement did not give a finite result"
        if value == 0.0:
            return "no overlap between the slice and the atlas structures"
    matrix, shift = _parameters(u, matrix0, shift0)
    rescale = np.linalg.svd(matrix @ np.linalg.inv(matrix0), compute_uv=False)
    if rescale.max() > max_rescale or rescale.min() < 1 / max_rescale:
        return (f"the refinement rescaled the slice by {rescale.min():.2f}-"
                f"{rescale.max():.2f}")
    affine = sitk.AffineTransform(2)
    affine.SetCenter(tuple(float(v) for v in centre))
    affine.SetMatrix(tuple(float(v) for v in matrix.ravel()))
    affine.SetTranslation(tuple(float(v) for v in shift))
    return affine


def _lbfgs(objective: _Objective, u: np.ndarray, max_iterations: int
           ) -> tuple[float, np.ndarray]:
    """Minimise ``objective`` from ``u`` with SciPy's L-BFGS-B, BLAS on one thread: with
    more, waking them cost more than the six-parameter work."""
    with _ONE_BLAS_THREAD.held():
        result = minimize(objective, u, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iterations, "ftol": 1e-9, "gtol": 1e-6})
    return float(result.fun), result.x


def _parameters(u: np.ndarray, matrix0: np.ndarray, shift0: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and translation from the six optimised numbers (all in mm at RADIUS_MM)."""
    return matrix0 + u[:4].reshape(2, 2) / RADIUS_MM, shift0 + u[4:]


class _Objective:
    """−NCC² of the fixed samples and the bilinearly sampled moving image, and its exact
    gradient with respect to the six parameters (zero outside the moving image)."""

    def __init__(self, rel: np.ndarray, values: np.ndarray, centre: np.ndarray,
                 matrix0: np.ndarray, shift0: np.ndarray, image: np.ndarray,
                 origin: np.ndarray, spacing: np.ndarray) -> None:
        a = values - values.mean()
        self.a = a / np.linalg.norm(a)
        self.rx, self.ry = np.ascontiguousarray(rel[:, 0]), np.ascontiguousarray(rel[:, 1])
        self.centre, self.matrix0, self.shift0 = centre, matrix0, shift0
        self.image = image  # with a border of zeros: sampling fades out continuously
        self.origin, self.spacing = origin, spacing

    def __call__(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        matrix, shift = _parameters(u, self.matrix0, self.shift0)
        (m00, m01), (m10, m11) = matrix.tolist()
        tx, ty = (self.centre + shift - self.origin) / self.spacing + 1.0  # +1: the border
        rx, ry = self.rx, self.ry
        px = (m00 / self.spacing[0]) * rx + (m01 / self.spacing[0]) * ry + tx
        py = (m10 / self.spacing[1]) * rx + (m11 / self.spacing[1]) * ry + ty
        b, db_dx, db_dy = _bilinear(self.image, px, py)
        b = b - b.mean()
        norm = np.linalg.norm(b)
        if norm == 0:
            return 0.0, np.zeros(6)
        ncc = float(self.a @ b) / norm
        dloss_db = -2.0 * ncc * (self.a - ncc * b / norm) / norm
        wx = dloss_db * db_dx / self.spacing[0]
        wy = dloss_db * db_dy / self.spacing[1]
        grad = np.array([wx @ rx / RADIUS_MM, wx @ ry / RADIUS_MM, wy @ rx / RADIUS_MM,
                         wy @ ry / RADIUS_MM, wx.sum(), wy.sum()])
        return -ncc * ncc, grad


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of ``image`` at pixel coordinates (x = column, y = row) by bilinear
    interpolation, and their exact derivatives along x and y; zero outside the image.

    ``image`` must have a border of zeros: then the values are continuous across the edge
    of the field of view. (Without it, a body cut by the field of view made NCC² jump where
    points left the image, and L-BFGS stalled there, millimetres from the optimum.)"""
    h, w = image.shape
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    x0 = np.clip(np.floor(x).astype(np.intp), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(np.intp), 0, h - 2)
    fx, fy = x - x0, y - y0
    flat = image.ravel()
    i = y0 * w + x0
    v00, v01, v10, v11 = flat[i], flat[i + 1], flat[i + w], flat[i + w + 1]
    top = v00 + fx * (v01 - v00)
    bottom = v10 + fx * (v11 - v10)
    value = top + fy * (bottom - top)
    dx = (v01 - v00) + fy * (v11 - v10 - v01 + v00)
    dy = bottom - top
    return value * inside, dx * inside, dy * inside


def _smoothed(image: sitk.Image, sigma_mm: float) -> np.ndarray:
    out = sitk.SmoothingRecursiveGaussian(image, sigma_mm) if sigma_mm > 0 else image
    return sitk.GetArrayFromImage(out)


def _fixed_samples(fixed: sitk.Image, region: np.ndarray, sigma_mm: float, step: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Physical points (x, y) and smoothed values of every ``step``-th region pixel."""
    grid = np.zeros_like(region, bool)
    grid[::step, ::step] = True
    rows, cols = np.nonzero(region & grid)
    ox, oy = fixed.GetOrigin()
    sx, sy = fixed.GetSpacing()
    points = np.stack([ox + cols * sx, oy + rows * sy], 1).astype(np.float64)
    return points, _smoothed(fixed, sigma_mm)[rows, cols].astype(np.float64)
