"""Affine registration of a slice to its level's atlas, with a quality score.

Fixed image = the atlas's wide template (512 mm field of view at 2 mm, so the whole body
outline takes part), moving image = the normalised slice as a canonical plane. The result
is the atlas→plane transform that :class:`AtlasMapping` carries.

Why this way:

* **Initialisation from body-mask moments.** The centroids and second moments of the atlas
  body and of the slice's body mask give a full affine guess (translation, rotation of the
  principal axes, a scale per principal axis). It survives any offset and large scale
  changes; a few rotation starts around it (scored by the metric at the coarsest level)
  guard against bodies that are nearly round, where the principal axes say little.
* **Mattes mutual information** tolerates contrast differences (T2w vs Dixon, fat-bright or
  fat-dark), on smoothed and shrunk images, a similarity stage then an affine stage, and
  gradient descent whose learning rate is estimated at every iteration (a fixed step failed
  to recover a rotation combined with a change of scale). Convergence is declared only when
  the energy changes by under 1e-8 over 10 iterations (a looser criterion stopped most
  levels after the minimum number of iterations). Since the NCC² refinement below converges
  by itself, these stages only need to bring the structures near: one level, at 4 mm
  (shrink 4), is enough, and more levels cost time without making the result better.
  These stages see a copy of the slice resampled to 2 mm pixels (``itk_spacing_mm``; the
  wide template's pixel, and ITK smooths by 4 mm anyway): ITK filters and differentiates the
  whole moving image at every stage, so a fine slice would cost more for nothing.
  The refinement and the quality scores use the slice at its own resolution. (Running ITK
  and the refinement both on a 1 mm copy let a miss through unflagged.)
* **Two starts in full.** The two starts with the best coarse metric are optimised one
  thread each; the fit that correlates best with the atlas around the structures is kept.
* **Refinement by NCC² with L-BFGS** (:mod:`.ncc_affine`): an affine fit on the 1 mm atlas
  inside the region of the labelled structures, maximising the squared normalised cross
  correlation (it does not care whether fat or muscle is the bright one) with SciPy's
  L-BFGS on the exact gradient, at 4, 2 and 0 mm smoothing (on pixels of 4, 2 and 1 mm).
  The 4 mm level lets a fit leave a worse optimum a few millimetres from a better one (with
  2, 1 and 0 mm, misses went unflagged), in the same time. ITK's gradient descent on the
  same metric stopped short of the optimum, and where it stopped depended on the start, so
  it is not used for this step (mutual information there did worse still); see
  ``paraspinal bench register`` and the README for the figures.
* **Quality score**: the Dice overlap of the atlas body and the registered body mask, the
  correlation of the atlas template with the registered slice inside the atlas body, and the
  correlation of the 1 mm atlas mean image with the registered slice around the labelled
  structures (the muscles can be off while the body outline fits; on warped phantoms good
  fits scored above ``min_structure_correlation`` there and failures mostly below).
  A case below any threshold is flagged for a human to check; registration never raises for
  a poor fit, so a batch goes on.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from ..core.config import config_from_dict
from ..core.geometry import SliceImage
from ..core.orientation import canonical_reorientation
from ..core.shared_setting import SharedSetting
from .atlas import Atlas
from .atlas_space import ATLAS_SPACING, AtlasMapping, atlas_reference, plane_image
from .ncc_affine import fixed_levels, ncc_levels, refine_prepared


@dataclass
class RegistrationConfig:
    """Settings of :func:`register`; JSON-friendly, stored in model cards.

    ``refine_metric`` has one value, "ncc" (:mod:`.ncc_affine`); the field stays because
    model cards record it. Registering with any other value is a ValueError.
    """

    histogram_bins: int = 32
    sampling: float = 1.0
    shrink: tuple[int, ...] = (4,)
    smoothing_mm: tuple[float, ...] = (4.0,)
    iterations: int = 200
    convergence: float = 1e-8
    convergence_window: int = 10
    stages: tuple[str, ...] = ("similarity", "affine")
    itk_spacing_mm: float = 2.0
    refine: bool = True
    refine_shrink: tuple[int, ...] = (4, 2, 1)
    refine_smoothing_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    refine_margin_mm: float = 30.0
    refine_metric: str = "ncc"
    refine_max_rescale: float = 1.5
    rotation_starts_deg: tuple[float, ...] = (-20.0, -10.0, 0.0, 10.0, 20.0)
    full_starts: int = 2
    refine_only_fallback: bool = True
    min_body_dice: float = 0.80
    min_correlation: float = 0.15
    min_structure_correlation: float = 0.55
    structure_margin_mm: float = 10.0
    seed: int = 20250

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RegistrationConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return config_from_dict(cls, d)


@dataclass
class RegistrationResult:
    """The mapping found, how good it looks, and whether a human should check it."""

    mapping: AtlasMapping
    level: str
    metric: float  # Mattes MI at the ITK stages' first level (more negative is better)
    body_dice: float
    correlation: float
    flagged: bool
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    structure_correlation: float = float("nan")
    refined_alone: bool = False  # the ITK fit was flagged; the refinement alone passed QC

    def qc_columns(self) -> dict:
        """The QC columns of a measurement row (correlation empty where no fit was made)."""
        corr = None if math.isnan(self.correlation) else round(self.correlation, 4)
        return {"registration_flagged": self.flagged,
                "registration_check": "; ".join(self.reasons),
                "registration_correlation": corr}

    def qc(self) -> dict:
        """Quality numbers as a JSON-friendly dict."""
        return {"level": self.level, "metric": self.metric, "body_dice": self.body_dice,
                "correlation": self.correlation,
                "structure_correlation": self.structure_correlation, "flagged": self.flagged,
                "reasons": list(self.reasons), "refined_alone": self.refined_alone,
                "seconds": self.seconds}


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


def _similarity_from(affine: sitk.AffineTransform) -> sitk.Similarity2DTransform:
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


def _as_affine(t: sitk.Transform) -> sitk.AffineTransform:
    """A similarity or affine transform as an AffineTransform with the same centre."""
    out = sitk.AffineTransform(2)
    out.SetCenter(t.GetCenter() if hasattr(t, "GetCenter") else (0.0, 0.0))
    out.SetMatrix(t.GetMatrix())
    out.SetTranslation(t.GetTranslation())
    return out


def _method(config: RegistrationConfig, levels: bool = True) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(config.histogram_bins)
    if config.sampling >= 1.0:
        reg.SetMetricSamplingStrategy(reg.NONE)
    else:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(config.sampling, config.seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsGradientDescent(
        learningRate=1.0, numberOfIterations=config.iterations,
        convergenceMinimumValue=config.convergence,
        convergenceWindowSize=config.convergence_window, estimateLearningRate=reg.EachIteration)
    reg.SetOptimizerScalesFromPhysicalShift()
    if levels:
        reg.SetShrinkFactorsPerLevel(list(config.shrink))
        reg.SetSmoothingSigmasPerLevel(list(config.smoothing_mm))
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return reg


def _shrunk(image: sitk.Image, config: RegistrationConfig) -> sitk.Image:
    """``image`` smoothed and shrunk like the ITK stages' (first) level."""
    smooth = sitk.SmoothingRecursiveGaussian(image, config.smoothing_mm[0])
    return sitk.Shrink(smooth, [config.shrink[0]] * 2)


def _metric_values(fixed: sitk.Image, moving: sitk.Image,
                   transforms: list[sitk.Transform], config: RegistrationConfig
                   ) -> list[float]:
    """Mattes MI of each transform on the whole of ``fixed`` (NaN where ITK finds too
    little overlap to compute it)."""
    values = []
    for transform in transforms:
        reg = _method(config, levels=False)
        reg.SetMetricSamplingStrategy(reg.NONE)
        reg.SetInitialTransform(transform, inPlace=False)
        try:
            values.append(float(reg.MetricEvaluate(fixed, moving)))
        except RuntimeError:
            values.append(float("nan"))
    return values


def _itk_one_thread() -> int:
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    return before


# ITK's multithreaded metric and scale estimation sum in a varying order, so the same slice
# would not give the same transform twice; one thread makes it repeatable. (The per-object
# setting of ``ImageRegistrationMethod`` is not enough: measured, it still varied run to run.)
_ITK_SINGLE_THREADED = SharedSetting(_itk_one_thread,
                                     sitk.ProcessObject.SetGlobalDefaultNumberOfThreads)


def register(image: SliceImage, mask: np.ndarray, atlas: Atlas,
             config: RegistrationConfig | None = None) -> RegistrationResult:
    """Register a normalised slice (with its body mask) to ``atlas``; never raises on a bad fit.

    ``image`` must already be bias-corrected and normalised the way the atlas was built.
    The result is repeatable: the same input gives the same transform.
    """
    with _ITK_SINGLE_THREADED.held():
        return _register(image, mask, atlas, config)


def detect_level(image: SliceImage, mask: np.ndarray, atlases: dict[str, Atlas],
                 config: RegistrationConfig | None = None
                 ) -> tuple[RegistrationResult, dict[str, RegistrationResult]]:
    """Register to every level's atlas and keep the best fit (highest correlation).

    The levels are registered at the same time, one thread each, with the same transforms
    as one after the other: ITK releases the GIL, so this is faster than one level after
    the other (with two starts per level the threads can outnumber the cores, and ``auto``
    then takes longer than registering to a given level).

    The wrong level's fit is usually flagged, so the refinement-alone fallback of
    :func:`register` runs only when the best fit of all levels is flagged (then for every
    level again); run for each flagged level, it doubled the time of ``auto``.
    """
    workers = max(1, min(len(atlases), os.cpu_count() or 1))

    def best_of(fallback: bool) -> tuple[RegistrationResult, dict[str, RegistrationResult]]:
        futures = {level: pool.submit(_register, image, mask, atlas, config, fallback)
                   for level, atlas in atlases.items()}
        results = {level: future.result() for level, future in futures.items()}
        return max(results.values(), key=lambda r: (not r.flagged, r.correlation)), results

    with _ITK_SINGLE_THREADED.held(), ThreadPoolExecutor(workers) as pool:
        best, results = best_of(fallback=False)
        if best.flagged and (config or RegistrationConfig()).refine_only_fallback:
            best, results = best_of(fallback=True)
    return best, results


def _register(image: SliceImage, mask: np.ndarray, atlas: Atlas,
              config: RegistrationConfig | None, fallback: bool = True) -> RegistrationResult:
    config = config or RegistrationConfig()
    start = time.perf_counter()
    r = canonical_reorientation(image.geometry)
    moving = plane_image(image, r)
    moving_mask = r.apply(np.asarray(mask, bool))
    fixed = atlas.wide_sitk()
    fixed_mask = atlas.wide_body > 0.5
    spacing = tuple(fixed.GetSpacing())
    origin = tuple(fixed.GetOrigin())

    starts = moments_initialisation(fixed_mask, spacing, origin, moving_mask,
                                    moving.GetSpacing(), config.rotation_starts_deg)
    coarse = _coarsened(moving, config.itk_spacing_mm)
    # the starts are ranked, and the final fit scored, at the ITK stages' first level
    fixed_small = atlas.memo(("wide_shrunk", config.shrink[0], config.smoothing_mm[0]),
                             lambda: _shrunk(fixed, config))
    moving_small = _shrunk(coarse, config)
    scores = np.nan_to_num(_metric_values(fixed_small, moving_small, starts, config), nan=0.0)
    ranked = [starts[int(i)] for i in np.argsort(scores, kind="stable")]
    refine = _refiner(atlas, moving, config)

    def assessed(fit: tuple[sitk.AffineTransform, list[str], float]) -> RegistrationResult:
        affine, reasons, structures = fit
        metric = _metric_values(fixed_small, moving_small, [affine], config)[0]
        body_dice, correlation = _quality(fixed, fixed_mask, moving, moving_mask, affine)
        reasons = reasons + _qc_reasons(metric, body_dice, correlation, structures, config)
        return RegistrationResult(mapping=AtlasMapping(image.geometry, r, affine),
                                  level=atlas.level, metric=metric, body_dice=body_dice,
                                  correlation=correlation, structure_correlation=structures,
                                  flagged=bool(reasons), reasons=reasons)

    result = assessed(_best_fit(ranked[: config.full_starts], fixed, coarse, moving, atlas,
                                refine, config.stages, config))
    if result.flagged and fallback and config.refine_only_fallback and refine is not None:
        # the ITK stages can end in a wrong basin (rarely, on warped phantoms, far off),
        # where the refinement alone from the moments starts finds the fit; kept only if
        # it passes QC, so a flagged case is never swapped for another flagged one
        fallback = assessed(_best_fit(ranked, fixed, coarse, moving, atlas, refine, (),
                                      config))
        if not fallback.flagged:
            result = fallback
            result.refined_alone = True
    result.seconds = time.perf_counter() - start
    return result


def _qc_reasons(metric: float, body_dice: float, correlation: float, structures: float,
                config: RegistrationConfig) -> list[str]:
    """Why a fit should be checked by a human (empty when it looks good)."""
    reasons = []
    if not np.isfinite(metric):
        reasons.append("registration diverged")
    if body_dice < config.min_body_dice:
        reasons.append(f"body overlap with the atlas {body_dice:.2f} < {config.min_body_dice}")
    if correlation < config.min_correlation:
        reasons.append(f"correlation with the atlas {correlation:.2f} < "
                       f"{config.min_correlation}")
    if structures < config.min_structure_correlation:
        reasons.append(f"correlation with the atlas around the muscles {structures:.2f} < "
                       f"{config.min_structure_correlation}")
    return reasons


def _best_fit(starts: list[sitk.Transform], fixed: sitk.Image, coarse: sitk.Image,
              moving: sitk.Image, atlas: Atlas, refine: _Refine | None,
              stages: tuple[str, ...], config: RegistrationConfig
              ) -> tuple[sitk.AffineTransform, list[str], float]:
    """Optimise from each start (one thread each) and keep the fit whose registered slice
    correlates best with the atlas around the labelled structures; fits that ITK gave up on
    lose to any that finished. Returns the transform, its flag reasons and that correlation.

    The optimum is flat enough that where it ends depends on the start: on warped phantoms,
    keeping the better of the two best coarse starts by this correlation recovered more of
    them than one start did, and more than choosing by the final metric.
    """
    def fit(start: sitk.Transform) -> tuple[sitk.AffineTransform, list[str], float]:
        affine, reasons = _optimise(start, fixed, coarse, refine, stages, config)
        return affine, reasons, _structure_correlation(atlas, moving, affine, config)

    if len(starts) == 1:
        fits = [fit(starts[0])]
    else:
        with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
            fits = list(pool.map(fit, starts))
    return max(fits, key=lambda f: (not f[1], np.nan_to_num(f[2], nan=-1.0)))


def _optimise(start: sitk.Transform, fixed: sitk.Image, coarse: sitk.Image,
              refine: _Refine | None, stages: tuple[str, ...], config: RegistrationConfig
              ) -> tuple[sitk.AffineTransform, list[str]]:
    """The ITK ``stages`` (similarity, affine) from ``start``, then ``refine``; the final
    transform and the reasons to flag it (an ITK failure leaves the last good transform)."""
    transform = start
    reasons = []
    for stage in stages:
        current = _similarity_from(transform) if stage == "similarity" else _as_affine(transform)
        reg = _method(config)
        reg.SetInitialTransform(current, inPlace=True)
        failure = _execute(reg, fixed, coarse)
        if failure:
            reasons.append(f"{stage} registration failed ({failure})")
            break
        transform = current
    affine = _as_affine(transform)
    if refine is not None and not reasons:
        refined = refine(affine)
        if isinstance(refined, str):
            reasons.append(f"affine refinement failed ({refined})")
        else:
            affine = refined
    return affine, reasons


def _coarsened(plane: sitk.Image, spacing_mm: float) -> sitk.Image:
    """``plane`` resampled to pixels of at least ``spacing_mm`` (Gaussian anti-aliasing, same
    physical frame), or unchanged where its pixels are already that coarse (or 0 is given)."""
    old = np.array(plane.GetSpacing(), float)
    new = np.maximum(old, spacing_mm)
    if spacing_mm <= 0 or np.all(new <= old * 1.05):
        return plane
    sigma = [max(float(v), 1e-3) for v in np.sqrt(new**2 - old**2) / 2.0]
    smooth = sitk.SmoothingRecursiveGaussian(plane, sigma)
    size = [int(v) for v in np.floor((np.array(plane.GetSize()) - 1) * old / new + 1e-6) + 1]
    return sitk.Resample(smooth, size, sitk.Transform(), sitk.sitkLinear, plane.GetOrigin(),
                         [float(v) for v in new], plane.GetDirection(), 0.0, sitk.sitkFloat32)


def _execute(reg: sitk.ImageRegistrationMethod, fixed: sitk.Image, moving: sitk.Image
             ) -> str:
    """Run a registration; "" on success, else ITK's reason in a few words (e.g. a slice
    that does not overlap the atlas at all), so a bad case is flagged instead of crashing."""
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as err:
        text = str(err)
        detail = text.split("ITK ERROR:")[-1].split(":", 1)[-1].strip().split(".")[0]
        return detail or "ITK error"
    return ""


_Refine = Callable[[sitk.AffineTransform], "sitk.AffineTransform | str"]


def _refiner(atlas: Atlas, moving: sitk.Image, config: RegistrationConfig
             ) -> _Refine | None:
    """The refinement on the 1 mm atlas, inside the region of the labelled structures, as a
    function of the start (the reason as text when it fails); None when it is off. What all
    starts share (NCC²'s samples and smoothed slices) is made here, once."""
    if not config.refine:
        return None
    if config.refine_metric != "ncc":
        raise ValueError(f"refine_metric must be 'ncc' (the only refinement there is), not "
                         f"{config.refine_metric!r}")
    fixed = atlas.memo("image_sitk", lambda: _atlas_image(atlas))
    region = _structure_region(atlas, config.refine_margin_mm)
    smoothing, steps = tuple(config.refine_smoothing_mm), tuple(config.refine_shrink)
    samples = atlas.memo(("ncc", config.refine_margin_mm, smoothing, steps),
                         lambda: fixed_levels(fixed, region, smoothing, steps))
    if isinstance(samples, str):
        return lambda affine: samples
    prepared = ncc_levels(samples, moving, smoothing)
    return lambda affine: refine_prepared(prepared, affine,
                                          max_rescale=config.refine_max_rescale)


def _atlas_image(atlas: Atlas) -> sitk.Image:
    """The 1 mm atlas mean image as a SimpleITK image on the atlas grid."""
    fixed = sitk.GetImageFromArray(np.asarray(atlas.image, np.float32))
    fixed.CopyInformation(atlas_reference())
    return fixed


def _structure_region(atlas: Atlas, margin_mm: float) -> np.ndarray:
    """Where the labelled structures are in the 1 mm atlas, grown by ``margin_mm``
    (made once per atlas and margin; not to be changed)."""
    return atlas.memo(("structure_region", margin_mm), lambda: ndi.binary_dilation(
        atlas.probabilities[1:].sum(0) > 0.2, iterations=max(1, int(margin_mm / ATLAS_SPACING))))


def _structure_correlation(atlas: Atlas, moving: sitk.Image, transform: sitk.Transform,
                           config: RegistrationConfig) -> float:
    """Correlation of the 1 mm atlas mean image and the registered slice around the muscles."""
    reference = atlas_reference()
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, reference, transform,
                                                  sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    region = _structure_region(atlas, config.structure_margin_mm)
    a, b = np.asarray(atlas.image)[region], warped[region]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _quality(fixed: sitk.Image, fixed_mask: np.ndarray, moving: sitk.Image,
             moving_mask: np.ndarray, transform: sitk.Transform) -> tuple[float, float]:
    """Body Dice and the template/slice correlation inside the atlas body."""
    mask_img = sitk.GetImageFromArray(moving_mask.astype(np.uint8))
    mask_img.CopyInformation(moving)
    warped_mask = sitk.GetArrayFromImage(sitk.Resample(
        mask_img, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear,
                                                  0.0, sitk.sitkFloat32))
    total = fixed_mask.sum() + warped_mask.sum()
    dice = float(2 * (fixed_mask & warped_mask).sum() / total) if total else 0.0
    a = sitk.GetArrayFromImage(fixed)[fixed_mask]
    b = warped[fixed_mask]
    if a.std() == 0 or b.std() == 0:
        return dice, 0.0
    return dice, float(np.corrcoef(a, b)[0, 1])
