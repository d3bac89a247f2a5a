"""Automatic body mask of an axial slice: the patient's cross-section, without the air around it.

Why this way, step by step:

1. Work in the *log* domain of a median-filtered slice (the median removes noise without
   moving edges, so the mask hugs the skin). The log squeezes tissue contrasts (dark muscle
   and bright fat on T2w, the reverse on water images) and a multiplicative bias field into
   a band far above the noise floor of the air.
2. Find the air: Otsu, applied again to the darker class while the split is real, peels
   dark tissue off the air even when the body fills the field of view. The body is what is
   clearly brighter than the air, so tissue that is dark on this contrast (muscle on a
   Dixon fat image, fat on a water image) stays in. Pure noise is refused: its typical
   "body" pixel is not several times brighter than its typical "air" pixel.
3. Clean up: keep the large parts, close small gaps, fill holes (also holes that a body
   cut by the field of view leaves open to the edge), add dark regions that are still
   clearly above the air as a whole (dark muscle reaching the edge of the image) and,
   when the outline is broken (dark tissue at noise level reaching the skin), bridge it
   with larger closings until the mask is nearly convex.

Speed: on fine pixels the mask is found on a copy binned to pixels of at most
``MASK_PIXEL_MM`` (block means) and repeated back: on a fine 512² slice most of the time goes
into the median filter, and binning cuts it severalfold. The outline moves by under a binned
pixel, which nothing downstream feels: N4 fits on a shrunk copy, the normalisation takes
percentiles, registration takes moments. Binning 1 mm slices to 2 mm as well lost a tiny
body's size (a disc just under the ``MIN_FRACTION`` limit grew past it), so they stay as
they are.

Limit: where dark tissue sits at the noise floor (muscle on a Dixon fat image) *and* reaches
the edge of the field of view, nothing in the slice tells it from air; it may be left out.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage.filters import threshold_otsu
from skimage.morphology import convex_hull_image

from ..core.errors import InputError
from ..core.geometry import Geometry, SliceImage

#: Width of the median filter, in mm (odd pixel count, 3 to 9).
MEDIAN_MM = 4.0
#: Sigma of the light Gaussian whose outline keeps thin skin over dark tissue, in mm.
GAUSS_MM = 0.8
#: Radius of the closing of small gaps, in mm.
CLOSING_MM = 3.0
#: Up to this radius (pixels) a closing runs with a disc footprint, beyond it with distance
#: transforms, whose cost does not grow with the radius.
SMALL_DISC_PX = 6
#: Radii tried in turn to bridge a broken outline, in mm.
BRIDGE_MM = (10.0, 20.0, 30.0)
#: Area over convex-hull area below which the outline counts as broken.
MIN_SOLIDITY = 0.95
#: Parts of the body apart from the largest are kept from this share of its size.
PIECE_SHARE = 0.05
#: Smallest body, as a fraction of the field of view.
MIN_FRACTION = 0.01
#: Smallest ratio of typical body to typical air intensity for the image to count as a body.
MIN_CONTRAST = 2.5
#: Body pixels are at least this many times brighter than the typical air pixel ...
AIR_FACTOR = 2.0
#: ... and this many robust noise spreads (log domain) above it.
AIR_SPREADS = 4.0
#: A dark region counts as body when its median is this many spreads above the air.
REGION_SPREADS = 2.0
#: Fine slices are binned to pixels of at most this size (mm) to find the mask.
MASK_PIXEL_MM = 1.75
#: Floor added before the log, relative to the bright end of the image.
LOG_FLOOR = 1e-3
#: Percentile taken as the zero of intensities when below 0 (not the minimum: outliers).
FLOOR_PERCENTILE = 1.0
#: Percentile that, with the span below it, bounds bright outliers.
CEIL_PERCENTILE = 99.9


def _log_images(image: SliceImage) -> tuple[np.ndarray, np.ndarray]:
    """Median- and Gaussian-filtered slice in the log domain, bright end of the body near 0."""
    data = np.asarray(image.data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise InputError(image.source, "image has non-finite pixels; cannot find the body")
    if np.ptp(data) == 0:
        raise InputError(image.source, "image is constant; no body found")
    data = data - robust_floor(data)
    sx, sy = image.geometry.spacing[:2]
    size = tuple(int(np.clip(2 * round(MEDIAN_MM / s / 2) + 1, 3, 9)) for s in (sy, sx))
    median = _median(data, size)
    gauss = ndi.gaussian_filter(data, sigma=(GAUSS_MM / sy, GAUSS_MM / sx))
    top = float(np.percentile(median, 99.5)) or float(median.max())
    if top <= 0:
        raise InputError(image.source, "image has no signal; no body found")
    return np.log(median / top + LOG_FLOOR), np.log(gauss / top + LOG_FLOOR)


def robust_floor(data: np.ndarray) -> float:
    """The zero of the intensity scale: 0, or the ``FLOOR_PERCENTILE`` where lower.

    Why not the minimum: one pixel of -32768 (an int16 padding value) or one large negative
    float would lift every other pixel by that much, squeeze body and air together in the
    log domain and make a good slice look like noise.
    """
    return min(float(np.percentile(data, FLOOR_PERCENTILE)), 0.0)


def clip_outliers(data: np.ndarray) -> np.ndarray:
    """``data`` (float) with pixels beyond the robust range pulled to its bounds.

    The range runs from :func:`robust_floor` up to the ``CEIL_PERCENTILE`` plus the span
    between the two, so ordinary tissue stays as it is and a few absurd pixels (-32768, 1e30)
    cannot dominate a filter, a mean or a threshold.
    """
    lo = robust_floor(data)
    hi = float(np.percentile(data, CEIL_PERCENTILE))
    return np.clip(data, lo, hi + max(hi - lo, 0.0))


def _median(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Median filter of odd ``size`` (rows, columns) with edge-replicating borders.

    ITK's filter is multi-threaded, so faster than SciPy's, with the same output as
    ``ndimage.median_filter(mode="nearest")`` on the float32 slice.
    """
    image = sitk.GetImageFromArray(data.astype(np.float32))
    filtered = sitk.Median(image, [size[1] // 2, size[0] // 2])
    return sitk.GetArrayFromImage(filtered).astype(np.float64)


def _robust_spread(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _air_level(log_img: np.ndarray, otsu: float) -> tuple[float, float]:
    """Typical log intensity of the air and its robust spread.

    Starting from the dark Otsu class, Otsu splits the darker class again while the split
    is real: two clusters at least ``AIR_FACTOR`` apart in intensity and ``AIR_SPREADS``
    spreads apart.
    """
    darkest = log_img[log_img <= otsu]
    min_size = max(int(0.002 * darkest.size), 10)
    for _ in range(6):
        if np.ptp(darkest) == 0:
            break
        t = threshold_otsu(darkest)
        lo, hi = darkest[darkest <= t], darkest[darkest > t]
        if min(lo.size, hi.size) < min_size:
            break
        gap = float(np.median(hi) - np.median(lo))
        spread = np.sqrt(0.5 * (_robust_spread(lo) ** 2 + _robust_spread(hi) ** 2))
        if gap < np.log(AIR_FACTOR) or gap < AIR_SPREADS * spread:
            break
        darkest = lo
    return float(np.median(darkest)), _robust_spread(darkest)


def _large_components(mask: np.ndarray, share: float = PIECE_SHARE) -> np.ndarray:
    """The largest connected component and those at least ``share`` times its size."""
    components, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    keep = sizes >= share * sizes.max()
    keep[0] = False
    return keep[components]


def _close(mask: np.ndarray, radius_mm: float, spacing: tuple[float, float]) -> np.ndarray:
    """Closing with a disc of ``radius_mm`` (distance transforms: fast for any radius).

    The mask is padded by repeating its edge, so a body cut by the field of view is not
    eaten into at the edge.
    """
    sx, sy = spacing
    pj, pi = int(np.ceil(radius_mm / sy)) + 1, int(np.ceil(radius_mm / sx)) + 1
    padded = np.pad(mask, ((pj, pj), (pi, pi)), mode="edge")
    if max(pj, pi) <= SMALL_DISC_PX:
        # the same disc as a footprint: the same closing, faster for a few pixels' radius
        ky, kx = int(radius_mm / sy), int(radius_mm / sx)
        oy, ox = np.mgrid[-ky:ky + 1, -kx:kx + 1]
        disc = np.hypot(oy * sy, ox * sx) <= radius_mm
        dilated = ndi.binary_dilation(padded, disc)
        closed = ndi.binary_erosion(dilated, disc, border_value=1)
    else:
        dilated = ndi.distance_transform_edt(~padded, sampling=(sy, sx)) <= radius_mm
        closed = ndi.distance_transform_edt(dilated, sampling=(sy, sx)) > radius_mm
    return closed[pj:-pj, pi:-pi] | mask


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes, also those a body cut by the field of view leaves open to one edge.

    Along each edge, the stretch between the first and last place where the mask touches it
    is taken as closed (as if the body went on beyond the edge).
    """
    frame = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    frame[1:-1, 1:-1] = mask
    edges = ((mask[0], frame[0, 1:-1]), (mask[-1], frame[-1, 1:-1]),
             (mask[:, 0], frame[1:-1, 0]), (mask[:, -1], frame[1:-1, -1]))
    for edge, target in edges:
        touching = np.flatnonzero(edge)
        if touching.size:
            target[touching[0] : touching[-1] + 1] = True
    return ndi.binary_fill_holes(frame)[1:-1, 1:-1]


def _add_dark_regions(mask: np.ndarray, log_img: np.ndarray, air: float,
                      spread: float) -> np.ndarray:
    """Add regions outside the mask whose median is clearly above the air (dark tissue)."""
    components, n = ndi.label(~mask)
    if n < 2:
        return mask
    medians = ndi.median(log_img, components, index=np.arange(1, n + 1))
    level = air + max(REGION_SPREADS * spread, 0.1)
    add = np.concatenate([[False], np.asarray(medians) > level])
    return mask | add[components]


def _solidity(mask: np.ndarray) -> float:
    """Area over the area of the convex hull of the mask's pixel squares.

    The hull of the outline pixels' corners (Qhull) is much faster than rasterising the
    hull (``convex_hull_image``); degenerate masks fall back to the raster.
    """
    outline = mask & ~ndi.binary_erosion(mask)
    rows, cols = np.nonzero(outline)
    corners = np.concatenate([np.stack([rows + dy, cols + dx], 1)
                              for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)])
    try:
        hull_area = ConvexHull(corners).volume
    except (QhullError, ValueError):
        hull_area = float(convex_hull_image(mask).sum())
    return float(mask.sum() / max(hull_area, 1.0))


def _binning(spacing: tuple[float, float]) -> tuple[int, int]:
    """Block size (rows, columns) that brings pixels as close to ``MASK_PIXEL_MM`` as an
    integer factor can without exceeding it (1 for pixels already that coarse)."""
    sx, sy = spacing
    return tuple(max(1, int(MASK_PIXEL_MM / s + 1e-9)) for s in (sy, sx))


def _binned(image: SliceImage, factors: tuple[int, int]) -> SliceImage:
    """Block means of ``factors`` pixels (edge pixels repeated to fill the last blocks),
    with the pixel spacing to match; same source name, so messages name the user's file."""
    fy, fx = factors
    rows, cols = image.shape
    pad = ((0, -rows % fy), (0, -cols % fx))
    data = np.pad(np.asarray(image.data, np.float32), pad, mode="edge")
    blocks = data.reshape(data.shape[0] // fy, fy, data.shape[1] // fx, fx).mean((1, 3))
    sx, sy, sz = image.geometry.spacing
    return SliceImage(blocks, Geometry(blocks.shape, (sx * fx, sy * fy, sz)), image.source)


def body_mask(image: SliceImage) -> np.ndarray:
    """Boolean mask (same shape as the slice) of the patient's body.

    Intensities are taken on a robust scale (:func:`clip_outliers`): a few absurd pixels do
    not change the mask. Raises :class:`InputError` when no body is found: constant or
    non-finite images, images without a clear body/air contrast (e.g. pure noise) or a body
    under 1 % of the field of view.
    """
    data = np.asarray(image.data)
    if not np.all(np.isfinite(data)):
        raise InputError(image.source, "image has non-finite pixels; cannot find the body")
    if np.ptp(data) == 0:
        raise InputError(image.source, "image is constant; no body found")
    image = image.with_data(clip_outliers(np.asarray(data, np.float64)))
    spacing = (float(image.geometry.spacing[0]), float(image.geometry.spacing[1]))
    factors = _binning(spacing)
    if factors == (1, 1):
        return _body_mask(image)
    coarse = _body_mask(_binned(image, factors))
    fine = np.repeat(np.repeat(coarse, factors[0], 0), factors[1], 1)
    return np.ascontiguousarray(fine[: image.shape[0], : image.shape[1]])


def _body_mask(image: SliceImage) -> np.ndarray:
    spacing = (float(image.geometry.spacing[0]), float(image.geometry.spacing[1]))
    log_img, log_gauss = _log_images(image)
    otsu = float(threshold_otsu(log_img))
    fg = log_img > otsu
    if not fg.any() or fg.all():
        raise InputError(image.source, "no body/air contrast; no body found")
    air, spread = _air_level(log_img, otsu)
    contrast = float(np.exp(np.median(log_img[fg]) - air))
    if contrast < MIN_CONTRAST:
        raise InputError(
            image.source,
            f"no body found: the image looks like noise (body/air contrast "
            f"{contrast:.2f} < {MIN_CONTRAST})",
        )
    threshold = min(otsu, air + max(AIR_SPREADS * spread, float(np.log(AIR_FACTOR))))
    outline = log_gauss > threshold
    enclosed = ndi.binary_fill_holes(outline) & ~outline
    pieces = _large_components((log_img > threshold) | enclosed)
    mask = _fill_holes(_close(pieces, CLOSING_MM, spacing))
    mask = _fill_holes(_add_dark_regions(mask, log_img, air, spread))
    for radius in BRIDGE_MM:
        if _solidity(mask) >= MIN_SOLIDITY:
            break
        mask = _fill_holes(_close(mask, radius, spacing))
    mask = _large_components(mask, share=1.0)
    fraction = float(mask.mean())
    if fraction < MIN_FRACTION:
        raise InputError(
            image.source,
            f"no body found: the largest foreground region covers {fraction:.2%} of the "
            f"field of view (< {MIN_FRACTION:.0%})",
        )
    return mask
