"""The NCC² affine refinement: recovers a known transform, and ITK agrees it is an optimum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from napari_paraspinal.preprocess.atlas_space import atlas_reference
from napari_paraspinal.preprocess.chain import default_atlases
from napari_paraspinal.preprocess.ncc_affine import refine_affine_ncc
from napari_paraspinal.preprocess.registration_optimise import structure_region


@pytest.fixture(scope="module")
def setup():
    """The L4-L5 atlas mean image as fixed, and a moving plane made from it by a known
    atlas→plane affine (0.8 mm pixels, larger field of view, a little noise)."""
    atlas = default_atlases()["L4-L5"]
    fixed = sitk.GetImageFromArray(np.asarray(atlas.image, np.float32))
    fixed.CopyInformation(atlas_reference())
    truth = sitk.AffineTransform(2)
    truth.SetCenter((0.0, 0.0))
    c, s = math.cos(0.2), math.sin(0.2)
    truth.SetMatrix((1.1 * c, -0.9 * s, 1.1 * s, 0.9 * c))
    truth.SetTranslation((170.0, 160.0))
    plane = sitk.Image(420, 400, sitk.sitkFloat32)
    plane.SetSpacing((0.8, 0.8))
    moving = sitk.Resample(fixed, plane, truth.GetInverse(), sitk.sitkLinear, 0.0)
    noise = np.random.default_rng(0).normal(0, 0.01, (400, 420)).astype(np.float32)
    noisy = sitk.GetImageFromArray(sitk.GetArrayFromImage(moving) + noise)
    noisy.CopyInformation(moving)
    return fixed, structure_region(atlas, 30.0), noisy, truth


def _perturbed(truth: sitk.AffineTransform) -> sitk.AffineTransform:
    """``truth`` rotated by 6° and scaled by 1.08 × 0.95 about the atlas centre, then
    shifted by (6, -5) mm."""
    start = sitk.AffineTransform(truth)
    start.Rotate(0, 1, 0.1, True)
    start.Scale((1.08, 0.95), True)
    start.Translate((6.0, -5.0))
    return start


def _distance(a: sitk.Transform, b: sitk.Transform, region: np.ndarray) -> float:
    rows, cols = np.nonzero(region)
    pts = np.stack([cols - 127.5, rows - 127.5], 1)[::50]
    return float(np.mean([np.hypot(*np.subtract(a.TransformPoint(tuple(p)),
                                                 b.TransformPoint(tuple(p)))) for p in pts]))


def test_known_affine_is_recovered_from_a_poor_start(setup) -> None:
    fixed, region, moving, truth = setup
    start = _perturbed(truth)
    assert _distance(start, truth, region) > 8.0
    out = refine_affine_ncc(fixed, region, moving, start)
    assert not isinstance(out, str), out
    assert _distance(out, truth, region) < 0.1


def test_inverted_contrast_is_recovered_too(setup) -> None:
    fixed, region, moving, truth = setup
    inverted = sitk.GetImageFromArray(1.0 - sitk.GetArrayFromImage(moving))
    inverted.CopyInformation(moving)
    out = refine_affine_ncc(fixed, region, inverted, _perturbed(truth))
    assert not isinstance(out, str), out
    assert _distance(out, truth, region) < 0.1


def test_itk_correlation_metric_agrees_it_is_an_optimum(setup) -> None:
    """ITK's own correlation metric (−NCC²) on the same region: no small step of any of the
    six parameters improves on the refined transform."""
    fixed, region, moving, truth = setup
    out = refine_affine_ncc(fixed, region, moving, _perturbed(truth))
    mask = sitk.GetImageFromArray(region.astype(np.uint8))
    mask.CopyInformation(fixed)

    def itk_metric(t: sitk.Transform) -> float:
        reg = sitk.ImageRegistrationMethod()
        reg.SetMetricAsCorrelation()
        reg.SetMetricFixedMask(mask)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetInitialTransform(t, inPlace=False)
        return reg.MetricEvaluate(fixed, moving)

    best = itk_metric(out)
    assert best < -0.95
    params = np.array(out.GetParameters())
    for i, step in enumerate([0.01, 0.01, 0.01, 0.01, 0.5, 0.5]):
        for sign in (-1, 1):
            t = sitk.AffineTransform(out)
            t.SetParameters(tuple(params + sign * step * np.eye(6)[i]))
            assert itk_metric(t) >= best - 1e-6, (i, sign)


def test_no_overlap_and_degenerate_fits_are_reasons(setup) -> None:
    fixed, region, moving, truth = setup
    far = sitk.AffineTransform(truth)
    far.Translate((5000.0, 5000.0))
    assert "overlap" in refine_affine_ncc(fixed, region, moving, far)
    rescaled = refine_affine_ncc(fixed, region, moving, _perturbed(truth), max_rescale=1.01)
    assert isinstance(rescaled, str) and "rescaled" in rescaled
