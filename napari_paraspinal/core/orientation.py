"""Put a slice into the canonical in-plane orientation and back, exactly (no resampling).

Canonical means the radiological view in LPS: columns run toward the patient's left, rows
toward posterior, so patient right is on the viewer's left and anterior at the top. Only axis
swaps and flips are used, so every pixel keeps its world position and the step is undone
without loss. Left and right therefore come from the direction matrix, never array position.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Geometry, SliceImage


@dataclass(frozen=True)
class Reorientation:
    """Axis swap and flips taking native arrays to canonical ones (applied in that order)."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Native → canonical for an array whose last two axes are (rows, cols)."""
        out = np.swapaxes(array, -1, -2) if self.transpose else array
        if self.flip_rows:
            out = out[..., ::-1, :]
        if self.flip_cols:
            out = out[..., :, ::-1]
        return np.ascontiguousarray(out)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """Canonical → native; the exact inverse of :meth:`apply`."""
        out = array
        if self.flip_cols:
            out = out[..., :, ::-1]
        if self.flip_rows:
            out = out[..., ::-1, :]
        if self.transpose:
            out = np.swapaxes(out, -1, -2)
        return np.ascontiguousarray(out)


def canonical_reorientation(geometry: Geometry) -> Reorientation:
    """The swaps and flips that make columns point to patient left and rows to posterior."""
    m = geometry.matrix
    # Which in-plane index axis runs more along the patient's left-right (world x)?
    transpose = abs(m[0, 1]) > abs(m[0, 0])
    col_axis, row_axis = (m[:, 1], m[:, 0]) if transpose else (m[:, 0], m[:, 1])
    return Reorientation(
        transpose=bool(transpose),
        flip_rows=bool(row_axis[1] < 0),
        flip_cols=bool(col_axis[0] < 0),
    )


def reorient_geometry(geometry: Geometry, r: Reorientation) -> Geometry:
    """Geometry of the array produced by ``r.apply``; every pixel keeps its world position."""
    m = geometry.matrix.copy()
    sx, sy, sz = geometry.spacing
    rows, cols = geometry.shape
    # Native index (i, j) of the new pixel (0, 0), and new axis vectors.
    if r.transpose:
        m = m[:, [1, 0, 2]]
        sx, sy = sy, sx
        rows, cols = cols, rows
    # After the optional transpose, axis 0 of m is the column axis, axis 1 the row axis.
    start_col = cols - 1 if r.flip_cols else 0
    start_row = rows - 1 if r.flip_rows else 0
    if r.flip_cols:
        m[:, 0] = -m[:, 0]
    if r.flip_rows:
        m[:, 1] = -m[:, 1]
    # World position of the new (0, 0): the old pixel at (start_col, start_row) of the
    # transposed array, i.e. native index swapped back when transposed.
    ci, cj = (start_row, start_col) if r.transpose else (start_col, start_row)
    origin = geometry.index_to_world(ci, cj)
    if np.linalg.det(m) < 0:
        m[:, 2] = -m[:, 2]  # keep a right-handed frame; the normal has no extent for a slice
    return Geometry(
        shape=(rows, cols),
        spacing=(sx, sy, sz),
        origin=tuple(float(v) for v in origin),
        direction=tuple(float(v) for v in m.ravel()),
    )


def to_canonical(image: SliceImage) -> tuple[SliceImage, Reorientation]:
    """The slice in canonical orientation and the reorientation that undoes it."""
    r = canonical_reorientation(image.geometry)
    if r.is_identity:
        return image, r
    return (
        image.with_data(r.apply(image.data), geometry=reorient_geometry(image.geometry, r)),
        r,
    )


def axis_codes(geometry: Geometry) -> str:
    """Where columns and rows run in the patient, as LPS letters: 'LP' is canonical.

    Like nibabel's ``aff2axcodes`` but in LPS: each letter names the direction in which the
    index increases (L/R, P/A, S/I) by the dominant world component of that axis.
    """
    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    m = geometry.matrix
    codes = []
    for axis in (m[:, 0], m[:, 1]):
        k = int(np.argmax(np.abs(axis)))
        codes.append(letters[k][0] if axis[k] > 0 else letters[k][1])
    return "".join(codes)


#: Largest angle (degrees) between the slice normal and the patient's head-foot axis for
#: the slice to count as axial. Beyond it the plane is closer to sagittal or coronal, and
#: "left" and "right" labels (and areas meant as axial cross-sections) lose their meaning.
MAX_AXIAL_TILT_DEG = 45.0


def plane_tilt_deg(geometry: Geometry) -> float:
    """Angle (degrees, 0-90) between the slice normal and the head-foot axis: 0 is axial."""
    m = geometry.matrix
    normal = np.cross(m[:, 0], m[:, 1])  # from the in-plane axes: the stored normal may lag
    norm = float(np.linalg.norm(normal))
    if norm == 0:
        return 90.0
    return float(np.degrees(np.arccos(min(1.0, abs(float(normal[2])) / norm))))


def not_axial_reason(geometry: Geometry) -> str | None:
    """A QC reason when the slice is not axial (sagittal, coronal, strongly oblique), else None.

    Left/right labels come from the in-plane axis closest to the patient's left; on such a
    plane that axis is mostly head-foot or front-back, so left/right numbers are not
    comparable with axial ones and must carry a flag, not only a note.
    """
    tilt = plane_tilt_deg(geometry)
    if tilt <= MAX_AXIAL_TILT_DEG:
        return None
    return (f"not an axial slice (plane {tilt:.0f}° from axial, over "
            f"{MAX_AXIAL_TILT_DEG:.0f}°): left/right and areas not comparable")
