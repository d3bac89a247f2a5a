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

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import SimpleITK as sitk

from ..core.geometry import SliceImage
from ..core.orientation import canonical_reorientation
from ..core.shared_setting import SharedSetting
from .atlas import Atlas
from .atlas_space import AtlasMapping, plane_image
from .registration_config import RegistrationConfig
from .registration_optimise import (
    _coarsened,
    _metric_values,
    _optimise,
    _Refine,
    _refiner,
    _shrunk,
)
from .registration_qc import (
    RegistrationResult,
    _qc_reasons,
    _quality,
    _structure_correlation,
)
from .registration_transforms import moments_initialisation


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
