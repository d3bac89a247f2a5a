"""A 2-D axial slice that carries its 3-D geometry (spacing, origin, direction) everywhere.

Conventions, one for the whole code base:
- world coordinates are LPS in millimetres (DICOM/ITK): +x patient left, +y posterior,
  +z superior. NIfTI's RAS is converted at the I/O boundary by SimpleITK.
- ``data[j, i]``: numpy rows are the image index j, columns index i (SimpleITK's order).
- ``direction`` is a 3×3 matrix whose columns are the world directions of i, j and the
  slice normal k; ``spacing`` is (along i, along j, slice thickness) in mm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class Geometry:
    """Where a slice's pixels are in the patient: enough to write labels back on its grid."""

    shape: tuple[int, int]  # (rows j, columns i)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    @property
    def matrix(self) -> np.ndarray:
        """Direction as a 3×3 array (columns: i, j, normal)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def pixel_area_mm2(self) -> float:
        """In-plane area of one pixel in mm²."""
        return float(self.spacing[0] * self.spacing[1])

    def index_to_world(self, i: np.ndarray | float, j: np.ndarray | float) -> np.ndarray:
        """LPS world position (mm) of continuous pixel indices; returns shape (..., 3)."""
        i = np.asarray(i, dtype=float)
        j = np.asarray(j, dtype=float)
        m = self.matrix
        return (
            np.asarray(self.origin)
            + i[..., None] * self.spacing[0] * m[:, 0]
            + j[..., None] * self.spacing[1] * m[:, 1]
        )

    def world_grid(self) -> np.ndarray:
        """World position of every pixel centre, shape (rows, cols, 3)."""
        jj, ii = np.meshgrid(
            np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij"
        )
        return self.index_to_world(ii, jj)

    def same_grid(self, other: Geometry, tol: float = 1e-3) -> bool:
        """True when both describe the same pixel grid (shape, in-plane spacing and axes, origin).

        The normal's sign is not compared: a one-slice grid is the same either way."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing[:2], other.spacing[:2], rtol=tol, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol * 10)
            and np.allclose(self.matrix[:, :2], other.matrix[:, :2], atol=tol)
        )

    def to_dict(self) -> dict:
        """JSON-friendly form."""
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        return cls(
            shape=tuple(int(v) for v in d["shape"]),
            spacing=tuple(float(v) for v in d["spacing"]),
            origin=tuple(float(v) for v in d["origin"]),
            direction=tuple(float(v) for v in d["direction"]),
        )

    def to_sitk(self, data: np.ndarray) -> sitk.Image:
        """A one-slice 3-D SimpleITK image holding ``data`` on this grid."""
        if data.shape != self.shape:
            raise ValueError(f"array shape {data.shape} does not match grid {self.shape}")
        img = sitk.GetImageFromArray(np.ascontiguousarray(data)[np.newaxis])
        img.SetSpacing(tuple(float(s) for s in self.spacing))
        img.SetOrigin(tuple(float(o) for o in self.origin))
        img.SetDirection(tuple(float(d) for d in self.direction))
        return img

    @classmethod
    def from_sitk(cls, img: sitk.Image, k: int = 0) -> Geometry:
        """Geometry of slice ``k`` of a 2-D or 3-D SimpleITK image."""
        size = img.GetSize()
        if img.GetDimension() == 2:
            sx, sy = img.GetSpacing()
            ox, oy = img.GetOrigin()
            d = img.GetDirection()
            m = np.eye(3)
            m[:2, :2] = np.asarray(d).reshape(2, 2)
            return cls(
                shape=(size[1], size[0]),
                spacing=(float(sx), float(sy), 1.0),
                origin=(float(ox), float(oy), 0.0),
                direction=tuple(float(v) for v in m.ravel()),
            )
        if img.GetDimension() != 3:
            raise ValueError(f"expected a 2-D or 3-D image, got {img.GetDimension()}-D")
        origin = img.TransformIndexToPhysicalPoint((0, 0, int(k)))
        return cls(
            shape=(size[1], size[0]),
            spacing=tuple(float(s) for s in img.GetSpacing()),
            origin=tuple(float(o) for o in origin),
            direction=tuple(float(v) for v in img.GetDirection()),
        )


@dataclass
class SliceImage:
    """Pixel data of one axial slice plus its geometry and where it came from.

    ``notes`` collects what a reader decided on the user's behalf (e.g. which slice of a
    volume it took), so the CLI and GUI can say so.
    """

    data: np.ndarray
    geometry: Geometry
    source: str = "<array>"
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise ValueError(f"SliceImage needs a 2-D array, got shape {self.data.shape}")
        if tuple(self.data.shape) != tuple(self.geometry.shape):
            raise ValueError(
                f"array shape {self.data.shape} does not match geometry {self.geometry.shape}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        return self.geometry.shape

    def with_data(self, data: np.ndarray, **changes) -> SliceImage:
        """Same geometry and provenance, new pixels (e.g. after bias correction)."""
        return replace(self, data=data, **changes)

    def to_sitk(self) -> sitk.Image:
        """A one-slice 3-D SimpleITK image with this slice's geometry."""
        return self.geometry.to_sitk(self.data)
