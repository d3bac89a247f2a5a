"""The labelled real MRI cases of the shared data folder (see ``shared/data/README.md``).

Each :class:`RealSeries` is one image stack with its label file and the map from the
source's label values to ours, so a benchmark can score a model on real scans without
knowing each source's conventions. Only the structures a source annotates are listed in
``annotated``; the others must not be scored on it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .core.geometry import SliceImage
from .core.io import list_slices, read_labels, read_slice
from .core.labels import ES_L, ES_R, MF_L, MF_R, NUM_CLASSES, PS_L, PS_R

ENV_VAR = "PARASPINAL_REAL_DATA"


def default_real_data_dir() -> Path:
    """``$PARASPINAL_REAL_DATA`` if set, else ``shared/data`` beside the repository."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class RealSeries:
    """One labelled image stack of a real case.

    ``images`` holds one file, or several on the same voxel grid that are added pixel by
    pixel (the first one's geometry is kept: the in-phase sum of a Dixon water and fat
    pair). ``label_map`` takes the file's label values to ours; values it lacks are
    background.
    """

    case: str
    contrast: str
    images: tuple[Path, ...]
    labels: Path
    label_map: dict[int, int]
    annotated: tuple[int, ...]
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.case}/{self.contrast}"

    def exists(self) -> bool:
        return all(p.is_file() for p in (*self.images, self.labels))

    def n_slices(self) -> int:
        return len(list_slices(self.images[0]))

    def to_ours(self, labels: np.ndarray) -> np.ndarray:
        """The file's label values as ours (uint8)."""
        lut = np.zeros(NUM_CLASSES, dtype=np.uint8)
        for theirs, ours in self.label_map.items():
            lut[theirs] = ours
        return lut[np.asarray(labels, dtype=np.intp)]


_LPM_MAP = {1: ES_R, 2: MF_R, 3: MF_L, 4: ES_L}
_LPM_NOTE = ("manual labels (LPM_Segmentator, MyoSegmenTUM images), L2-L5, Dixon; "
             "MF and ES only")
_MUSCLEMAP_MAP = {1: MF_R, 2: MF_L, 3: ES_R, 4: ES_L, 5: PS_R, 6: PS_L, 7: 0, 8: 0}
_MUSCLEMAP_NOTE = ("labels are MuscleMap's model output, not manual; their quadratus "
                   "lumborum (7, 8) is background here (we do not segment QL)")


def real_series(root: Path | None = None) -> list[RealSeries]:
    """The labelled series whose files exist under ``root`` (default: see
    :func:`default_real_data_dir`)."""
    root = Path(root) if root is not None else default_real_data_dir()
    lpm, mm = root / "lpm_tum01", root / "musclemap_sub0001"
    lpm_annotated = (MF_L, MF_R, ES_L, ES_R)
    candidates = [
        RealSeries("lpm_tum01", "water", (lpm / "water.nii.gz",),
                   lpm / "labels_water_header.nii.gz", _LPM_MAP, lpm_annotated,
                   _LPM_NOTE + "; the water header lost its origin: labels are the same array "
                   "with the water header"),
        RealSeries("lpm_tum01", "fat", (lpm / "fat.nii.gz",), lpm / "labels.nii.gz",
                   _LPM_MAP, lpm_annotated, _LPM_NOTE),
        RealSeries("lpm_tum01", "inphase", (lpm / "fat.nii.gz", lpm / "water.nii.gz"),
                   lpm / "labels.nii.gz", _LPM_MAP, lpm_annotated,
                   _LPM_NOTE + "; in-phase = water + fat by voxel (same grid), fat geometry"),
        RealSeries("musclemap_sub0001", "fat", (mm / "image.nii.gz",), mm / "labels.nii.gz",
                   _MUSCLEMAP_MAP, (PS_L, PS_R, MF_L, MF_R, ES_L, ES_R), _MUSCLEMAP_NOTE),
    ]
    return [s for s in candidates if s.exists()]


def read_series_slice(series: RealSeries, k: int) -> tuple[SliceImage, np.ndarray]:
    """Slice ``k`` of a series and its labels in our values on that slice's grid."""
    image = read_slice(series.images[0], index=k)
    if len(series.images) > 1:
        data = image.data.astype(np.float64)
        for path in series.images[1:]:
            other = read_slice(path, index=k)
            if other.shape != image.shape:
                raise ValueError(f"{path} is {other.shape}, {series.images[0]} {image.shape}: "
                                 "not the same voxel grid")
            data += other.data
        names = " + ".join(p.name for p in series.images[::-1])
        image = image.with_data(data.astype(np.float32),
                                source=f"{names} (in-phase sum, geometry of "
                                       f"{series.images[0]})",
                                notes=list(image.notes), meta=dict(image.meta))
    labels = read_labels(series.labels, image.geometry, notes=[])  # its convention: to_ours
    return image, series.to_ours(labels)


def load_series(series: RealSeries, indices: Sequence[int] | None = None
                ) -> list[tuple[SliceImage, np.ndarray]]:
    """Every slice (or those of ``indices``) as (image, labels in our values, uint8)."""
    ks = range(series.n_slices()) if indices is None else indices
    return [read_series_slice(series, k) for k in ks]
