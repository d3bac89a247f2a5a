"""Optimising one start of atlas registration (:mod:`.registration`): the ITK stages (Mattes
mutual information on smoothed, shrunk images; similarity then affine), then the NCC²
refinement on the 1 mm atlas (:mod:`.ncc_affine`) inside the region of the labelled
structures. An ITK or refinement failure becomes a reason to flag the fit, not an exception."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .atlas import Atlas
from .atlas_space import ATLAS_SPACING, atlas_reference
from .ncc_affine import fixed_levels, ncc_levels, refine_prepared
from .registration_config import RegistrationConfig
from .registration_transforms import centred_affine, similarity_from


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


def _optimise(start: sitk.Transform, fixed: sitk.Image, coarse: sitk.Image,
              refine: _Refine | None, stages: tuple[str, ...], config: RegistrationConfig
              ) -> tuple[sitk.AffineTransform, list[str]]:
    """The ITK ``stages`` (similarity, affine) from ``start``, then ``refine``; the final
    transform and the reasons to flag it (an ITK failure leaves the last good transform)."""
    transform = start
    reasons = []
    for stage in stages:
        current = similarity_from(transform) if stage == "similarity" else centred_affine(transform)
        reg = _method(config)
        reg.SetInitialTransform(current, inPlace=True)
        failure = _execute(reg, fixed, coarse)
        if failure:
            reasons.append(f"{stage} registration failed ({failure})")
            break
        transform = current
    affine = centred_affine(transform)
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
    region = structure_region(atlas, config.refine_margin_mm)
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


def structure_region(atlas: Atlas, margin_mm: float) -> np.ndarray:
    """Where the labelled structures are in the 1 mm atlas, grown by ``margin_mm``
    (made once per atlas and margin; not to be changed)."""
    return atlas.memo(("structure_region", margin_mm), lambda: ndi.binary_dilation(
        atlas.probabilities[1:].sum(0) > 0.2, iterations=max(1, int(margin_mm / ATLAS_SPACING))))
