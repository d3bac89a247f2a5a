"""The way into the network's space (256×256 at 1×1 mm) and back, without guessing.

A slice is first put in canonical orientation by exact swaps/flips and seen as a 2-D
"plane" image (x toward the patient's left, y posterior, mm, origin 0). A 2-D affine
transform maps atlas points to plane points (ITK's fixed = atlas, moving = native). Images
go to atlas space with linear interpolation, label maps with nearest neighbour, and class
probabilities come back with linear interpolation before the argmax is taken on the native
grid, so thin structures survive the round trip. Registration (to come) only refines the
transform held here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..core.geometry import Geometry, SliceImage
from ..core.orientation import Reorientation, canonical_reorientation, reorient_geometry

ATLAS_SIZE = 256
ATLAS_SPACING = 1.0


def atlas_reference(spacing: float = ATLAS_SPACING) -> sitk.Image:
    """The atlas grid: 256×256 pixels of ``spacing`` mm (1 mm: the network's), centred on the
    origin."""
    ref = sitk.Image(ATLAS_SIZE, ATLAS_SIZE, sitk.sitkFloat32)
    ref.SetSpacing((spacing, spacing))
    half = (ATLAS_SIZE - 1) / 2 * spacing
    ref.SetOrigin((-half, -half))
    return ref


@dataclass
class AtlasMapping:
    """Everything needed to go from a native slice to atlas space and back."""

    native: Geometry
    reorientation: Reorientation
    transform: sitk.Transform  # atlas point -> plane point (mm)

    def plane_reference(self) -> sitk.Image:
        """The native grid as a 2-D plane image (canonical orientation, origin 0)."""
        g = reorient_geometry(self.native, self.reorientation)
        ref = sitk.Image(g.shape[1], g.shape[0], sitk.sitkFloat32)
        ref.SetSpacing(g.spacing[:2])
        return ref

    def to_dict(self) -> dict:
        """JSON-friendly form (the transform as ITK parameters)."""
        affine = sitk.AffineTransform(self.transform) if self.transform.GetName() == \
            "AffineTransform" else as_affine(self.transform)
        return {
            "native": self.native.to_dict(),
            "reorientation": vars(self.reorientation).copy(),
            "transform": {"matrix": list(affine.GetMatrix()),
                          "translation": list(affine.GetTranslation()),
                          "center": list(affine.GetCenter())},
        }

    @classmethod
    def from_dict(cls, d: dict) -> AtlasMapping:
        t = sitk.AffineTransform(2)
        t.SetMatrix(d["transform"]["matrix"])
        t.SetTranslation(d["transform"]["translation"])
        t.SetCenter(d["transform"]["center"])
        return cls(Geometry.from_dict(d["native"]), Reorientation(**d["reorientation"]), t)


def as_affine(transform: sitk.Transform) -> sitk.AffineTransform:
    """Any linear 2-D transform as an AffineTransform about the origin (by probing three
    points)."""
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mapped = np.array([transform.TransformPoint(tuple(p)) for p in pts])
    t = sitk.AffineTransform(2)
    t.SetMatrix(tuple((mapped[1:] - mapped[0]).T.ravel()))
    t.SetTranslation(tuple(mapped[0]))
    return t


def compose(outer: sitk.Transform, inner: sitk.Transform) -> sitk.AffineTransform:
    """``outer(inner(x))`` as one AffineTransform about the origin."""
    o, i = as_affine(outer), as_affine(inner)
    mo, mi = np.array(o.GetMatrix()).reshape(2, 2), np.array(i.GetMatrix()).reshape(2, 2)
    out = sitk.AffineTransform(2)
    out.SetMatrix(tuple((mo @ mi).ravel()))
    out.SetTranslation(tuple(mo @ np.array(i.GetTranslation()) + np.array(o.GetTranslation())))
    return out


def plane_image(image: SliceImage, reorientation: Reorientation | None = None) -> sitk.Image:
    """The slice as a 2-D plane image in canonical orientation (origin 0, mm spacing)."""
    r = reorientation or canonical_reorientation(image.geometry)
    g = reorient_geometry(image.geometry, r)
    plane = sitk.GetImageFromArray(r.apply(np.asarray(image.data, np.float32)))
    plane.SetSpacing(g.spacing[:2])
    return plane


def centred_mapping(image: SliceImage, mask: np.ndarray | None = None) -> AtlasMapping:
    """Initial mapping: the centre of ``mask`` (or of the image) at the atlas centre."""
    r = canonical_reorientation(image.geometry)
    g = reorient_geometry(image.geometry, r)
    if mask is not None and np.asarray(mask).any():
        rows, cols = np.nonzero(r.apply(np.asarray(mask, bool)))
        centre = (cols.mean() * g.spacing[0], rows.mean() * g.spacing[1])
    else:
        centre = ((g.shape[1] - 1) / 2 * g.spacing[0], (g.shape[0] - 1) / 2 * g.spacing[1])
    t = sitk.AffineTransform(2)
    t.SetTranslation(tuple(float(c) for c in centre))
    return AtlasMapping(image.geometry, r, t)


def to_atlas(image: SliceImage, mapping: AtlasMapping) -> np.ndarray:
    """The slice resampled onto the atlas grid (linear), float32 256×256."""
    out = sitk.Resample(plane_image(image, mapping.reorientation), atlas_reference(),
                        mapping.transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def labels_to_atlas(labels: np.ndarray, mapping: AtlasMapping) -> np.ndarray:
    """A native label map on the atlas grid (nearest neighbour), uint8 256×256."""
    plane = sitk.GetImageFromArray(mapping.reorientation.apply(np.asarray(labels, np.uint8)))
    plane.CopyInformation(mapping.plane_reference())
    out = sitk.Resample(plane, atlas_reference(), mapping.transform, sitk.sitkNearestNeighbor,
                        0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


def probabilities_to_native(probs: np.ndarray, mapping: AtlasMapping) -> np.ndarray:
    """Class probabilities (C×256×256) back on the native grid (C×rows×cols), linear.

    Outside the atlas field of view the background (channel 0) has probability 1.
    """
    ref = mapping.plane_reference()
    inverse = mapping.transform.GetInverse()
    atlas = atlas_reference()
    channels = []
    for c, prob in enumerate(np.asarray(probs, np.float32)):
        img = sitk.GetImageFromArray(prob)
        img.CopyInformation(atlas)
        out = sitk.Resample(img, ref, inverse, sitk.sitkLinear, 1.0 if c == 0 else 0.0,
                            sitk.sitkFloat32)
        channels.append(sitk.GetArrayFromImage(out))
    return mapping.reorientation.undo(np.stack(channels))


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Labels as C×H×W float32 probabilities."""
    return (np.arange(num_classes)[:, None, None] == labels[None]).astype(np.float32)
