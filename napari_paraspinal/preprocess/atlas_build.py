"""Group-wise affine atlas building from labelled slices (``paraspinal atlas build``).

Every case starts with its labelled structures' centroid at the origin; the template is the
mean of the cases; each round registers every case to the template (affine), removes the
mean transform (so the atlas has the population's average shape and position, not the
first case's) and averages again. The atlas itself (:class:`.atlas.Atlas`) and its loading
live in :mod:`.atlas`, which registration uses; building uses registration, so it lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.config import config_to_dict
from ..core.geometry import SliceImage
from ..core.labels import NUM_CLASSES
from ..core.orientation import canonical_reorientation, reorient_geometry
from ..jobs import ProgressFn, report
from .atlas import WIDE_SPACING, Atlas, wide_reference
from .atlas_space import (
    ATLAS_SIZE,
    AtlasMapping,
    as_affine,
    atlas_reference,
    compose,
    one_hot,
    plane_image,
)
from .registration import register
from .registration_config import RegistrationConfig


@dataclass
class AtlasCase:
    """One training slice for an atlas: normalised image, body mask and label map."""

    image: SliceImage
    mask: np.ndarray
    labels: np.ndarray


def _label_centroid_mapping(case: AtlasCase) -> AtlasMapping:
    """Translation that puts the centroid of the labelled structures at the atlas origin."""
    r = canonical_reorientation(case.image.geometry)
    g = reorient_geometry(case.image.geometry, r)
    lab = r.apply(np.asarray(case.labels) > 0)
    if not lab.any():
        lab = r.apply(np.asarray(case.mask, bool))
    rows, cols = np.nonzero(lab)
    t = sitk.AffineTransform(2)
    t.SetTranslation((float(cols.mean() * g.spacing[0]), float(rows.mean() * g.spacing[1])))
    return AtlasMapping(case.image.geometry, r, t)


def _resample(plane: sitk.Image, ref: sitk.Image, transform: sitk.Transform,
              nearest: bool = False) -> np.ndarray:
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(plane, ref, transform, interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _plane_of(array: np.ndarray, mapping: AtlasMapping) -> sitk.Image:
    img = sitk.GetImageFromArray(mapping.reorientation.apply(np.asarray(array, np.float32)))
    img.CopyInformation(mapping.plane_reference())
    return img


def _mean_affine(transforms: list[sitk.Transform]) -> sitk.AffineTransform:
    """The mean of affine transforms expressed about the origin."""
    affines = [as_affine(t) for t in transforms]
    mean = sitk.AffineTransform(2)
    mean.SetMatrix(tuple(np.mean([a.GetMatrix() for a in affines], 0)))
    mean.SetTranslation(tuple(np.mean([a.GetTranslation() for a in affines], 0)))
    return mean


def _average(cases: list[AtlasCase], planes: list[sitk.Image], mappings: list[AtlasMapping],
             level: str) -> Atlas:
    """The atlas that the cases make under the current mappings."""
    wide, ref = wide_reference(), atlas_reference()
    pairs = list(zip(cases, planes, mappings, strict=True))
    wide_image = np.mean([_resample(p, wide, m.transform) for _, p, m in pairs], 0)
    wide_body = np.mean([_resample(_plane_of(c.mask, m), wide, m.transform)
                         for c, _, m in pairs], 0)
    image = np.mean([_resample(p, ref, m.transform) for _, p, m in pairs], 0)
    probabilities = np.zeros((NUM_CLASSES, ATLAS_SIZE, ATLAS_SIZE), np.float32)
    for case, _, m in pairs:
        hot = one_hot(np.asarray(case.labels, np.uint8), NUM_CLASSES)
        for c in range(1, NUM_CLASSES):
            probabilities[c] += _resample(_plane_of(hot[c], m), ref, m.transform)
    probabilities /= len(cases)
    probabilities[0] = np.clip(1.0 - probabilities[1:].sum(0), 0.0, 1.0)
    return Atlas(level, image.astype(np.float32), probabilities,
                 wide_image.astype(np.float32), wide_body.astype(np.float32))


def build_atlas(cases: list[AtlasCase], level: str, rounds: int = 3,
                config: RegistrationConfig | None = None,
                progress: ProgressFn | None = None) -> Atlas:
    """Group-wise affine atlas of ``cases`` (all of one level); see the module docstring.

    Progress: stage ``register``, one step per case and round."""
    from .. import __version__

    if len(cases) < 2:
        raise ValueError(f"an atlas needs at least 2 cases, got {len(cases)}")
    config = config or RegistrationConfig(rotation_starts_deg=(0.0,))
    mappings = [_label_centroid_mapping(c) for c in cases]
    planes = [plane_image(c.image, m.reorientation)
              for c, m in zip(cases, mappings, strict=True)]
    current = _average(cases, planes, mappings, level)
    for round_ in range(rounds):
        new = []
        for i, case in enumerate(cases):
            new.append(register(case.image, case.mask, current, config).mapping.transform)
            report(progress, "register", round_ * len(cases) + i + 1, rounds * len(cases),
                   message=f"[{level}] registration, round {round_ + 1} of {rounds}")
        inverse_mean = _mean_affine(new).GetInverse()
        mappings = [AtlasMapping(m.native, m.reorientation, compose(t, inverse_mean))
                    for m, t in zip(mappings, new, strict=True)]
        # keep the labelled structures centred at the origin
        wide = wide_reference()
        share = np.mean([_resample(_plane_of(c.labels > 0, m), wide, m.transform)
                         for c, m in zip(cases, mappings, strict=True)], 0)
        rows, cols = np.nonzero(share > 0.5)
        shift = sitk.TranslationTransform(2, (
            float(wide.GetOrigin()[0] + cols.mean() * WIDE_SPACING),
            float(wide.GetOrigin()[1] + rows.mean() * WIDE_SPACING)))
        mappings = [AtlasMapping(m.native, m.reorientation, compose(m.transform, shift))
                    for m in mappings]
        current = _average(cases, planes, mappings, level)
    # what a rebuild must repeat: registration settings and the software that ran them
    current.meta = {"cases": len(cases), "rounds": rounds,
                    "registration": config_to_dict(config),
                    "software": {"napari-paraspinal": __version__,
                                 "SimpleITK": sitk.Version.VersionString()},
                    "sources": [c.image.source for c in cases]}
    return current
