"""Is fat bright or dark on this image? Decided from the slice and its labels.

The fat methods need to know which end of the intensity scale is fat: bright on T2w, T1w,
Dixon fat and in-phase images, dark on Dixon water and fat-suppressed images. The image's
own subcutaneous fat tells: the back's subcutaneous fat lies just behind and beside the
multifidus and erector spinae in every lumbar slice, so the unlabelled body pixels in a
band 2-20 mm outside these muscles, on their posterior side, are mostly fat
(:func:`subcutaneous_band`). Their median against the muscles' median gives the answer
(:func:`detect_fat_contrast`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .core.geometry import Geometry, SliceImage
from .core.labels import FAT_LABELS

#: The band of unlabelled pixels taken as subcutaneous fat, distance from the muscles (mm).
BAND_MM: tuple[float, float] = (2.0, 20.0)
#: Band median over muscle median at least this: fat is bright; at most its inverse: dark.
#: Measured ratios: Dixon fat 10-37, T2w phantoms 3.1-3.9, T1w phantoms 1.9-2.3, in-phase
#: (water + fat) of lpm_tum01 1.56-2.57 (lowest on its bottom slice), MuscleMap fat image
#: 5.9-14; Dixon water 0.14-0.29 (lpm_tum01) and 0.11-0.13 (phantoms).
CONTRAST_RATIO = 1.3
#: Fewest pixels in the band and in the muscles for a decision.
MIN_PIXELS = 50

BRIGHT, DARK, UNKNOWN = "bright", "dark", "unknown"


def _body(image: SliceImage, mask: np.ndarray | None) -> np.ndarray | None:
    """The body mask given, else found; None where no body can be found (then the band is
    not limited to it)."""
    if mask is not None:
        return np.asarray(mask, bool)
    from .core.errors import InputError
    from .preprocess.bodymask import body_mask

    try:
        return body_mask(image)
    except InputError:
        return None


def subcutaneous_band(labels: np.ndarray, geometry: Geometry, body: np.ndarray | None = None,
                      band_mm: tuple[float, float] = BAND_MM) -> np.ndarray:
    """Unlabelled pixels ``band_mm`` outside the MF and ES labels, posterior of their centre.

    Posterior is the patient's (world +y, LPS), from the geometry, so the band is found
    whatever the array orientation. Pixels of any label, and outside ``body`` when given,
    are left out. Empty when there is no MF or ES label.
    """
    labels = np.asarray(labels)
    muscles = np.isin(labels, FAT_LABELS)
    if not muscles.any():
        return np.zeros(labels.shape, bool)
    sx, sy = geometry.spacing[:2]
    dist = ndi.distance_transform_edt(~muscles, sampling=(sy, sx))
    band = (dist > band_mm[0]) & (dist <= band_mm[1]) & (labels == 0)
    y = geometry.world_grid()[..., 1]
    band &= y > y[muscles].mean()
    if body is not None:
        band &= np.asarray(body, bool)
    return band


def fat_contrast_ratio(image: SliceImage, labels: np.ndarray, mask: np.ndarray | None = None
                       ) -> float | None:
    """Median of the subcutaneous band over the median inside MF and ES (None when either
    has under ``MIN_PIXELS`` pixels or the muscle median is not positive)."""
    labels = np.asarray(labels)
    data = np.asarray(image.data, np.float64)
    muscles = np.isin(labels, FAT_LABELS)
    band = subcutaneous_band(labels, image.geometry, _body(image, mask))
    if band.sum() < MIN_PIXELS or muscles.sum() < MIN_PIXELS:
        return None
    muscle = float(np.median(data[muscles]))
    if muscle <= 0:
        return None
    return float(np.median(data[band])) / muscle


def detect_fat_contrast(image: SliceImage, labels: np.ndarray, mask: np.ndarray | None = None
                        ) -> str:
    """``"bright"`` (T2w, T1w, Dixon fat, in-phase), ``"dark"`` (Dixon water, fat-suppressed)
    or ``"unknown"``.

    Rule: the subcutaneous band's median over the MF/ES median (:func:`fat_contrast_ratio`)
    is at least ``CONTRAST_RATIO`` (1.3): bright; at most 1/1.3: dark; between, or too few
    pixels to tell: unknown. ``mask`` is the body mask (default: found on the image).
    """
    ratio = fat_contrast_ratio(image, labels, mask)
    if ratio is None:
        return UNKNOWN
    if ratio >= CONTRAST_RATIO:
        return BRIGHT
    if ratio <= 1.0 / CONTRAST_RATIO:
        return DARK
    return UNKNOWN


def fat_is_bright(image: SliceImage, labels: np.ndarray, mask: np.ndarray | None = None
                  ) -> bool | None:
    """For :class:`.fat.FatConfig`: True, False, or None when the contrast is unknown (the
    caller then leaves the fat columns empty and flags the case)."""
    return {BRIGHT: True, DARK: False}.get(detect_fat_contrast(image, labels, mask))
