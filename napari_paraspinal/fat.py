"""Fat and muscle separation inside the multifidus and erector spinae labels.

As in the paper, two-cluster k-means on the (bias-corrected) intensities inside each muscle
and side; the brighter cluster is fat on T2w. A Gaussian mixture and Otsu's threshold are
alternatives. A muscle too small to split, or whose intensities are not bimodal, gets a
value and a flag instead of a made-up split.

``gmm3`` and ``calibrated`` (:mod:`.fat_methods`) give every pixel a fat fraction anchored on
the slice's subcutaneous fat, so fat spread through the muscle below any threshold counts;
their fat mask is the pixels at least half fat.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .core.geometry import Geometry, SliceImage
from .core.labels import BY_VALUE, FAT_LABELS
from .fat_contrast import fat_is_bright
from .fat_methods import CONTINUOUS_METHODS, pixel_fat
from .fat_options import DEFAULT_METHOD, METHODS, PAPER_METHOD, TWO_CLASS_METHODS

__all__ = ["DEFAULT_METHOD", "METHODS", "PAPER_METHOD", "TWO_CLASS_METHODS", "FatConfig",
           "FatResult", "MuscleFat", "bimodality_coefficient", "separate_fat",
           "split_threshold"]



@dataclass(frozen=True)
class FatConfig:
    """How fat is separated; stored with every measurement."""

    method: str = DEFAULT_METHOD
    fat_is_bright: bool | None = None  # None: detected per slice (:mod:`.fat_contrast`)
    min_pixels: int = 20
    min_separation: float = 3.0  # cluster centres apart by this many within-cluster SDs...
    min_bimodality: float = 5 / 9  # ...or a bimodality coefficient above this (skewed tail)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")


@dataclass
class MuscleFat:
    """Fat measurements of one muscle on one side."""

    label: int
    csa_mm2: float
    fat_fraction: float
    flag: str = ""  # "", "absent", "too small", "not bimodal", "no fat reference"

    @property
    def fat_csa_mm2(self) -> float:
        return self.csa_mm2 * self.fat_fraction

    @property
    def lean_csa_mm2(self) -> float:
        return self.csa_mm2 - self.fat_csa_mm2


@dataclass
class FatResult:
    """Per-muscle results and the fat mask (for overlays and the GUI)."""

    muscles: dict[int, MuscleFat]
    fat_mask: np.ndarray
    config: FatConfig = field(default_factory=FatConfig)

    def columns(self) -> dict[str, float | str | None]:
        """Spreadsheet columns ``<short>_lean_csa_mm2``, ``<short>_fat_pct``, flags."""
        row: dict[str, float | str | None] = {}
        for value, m in self.muscles.items():
            short = BY_VALUE[value].short
            known = np.isfinite(m.fat_fraction)
            row[f"{short}_lean_csa_mm2"] = round(m.lean_csa_mm2, 3) if known else None
            row[f"{short}_fat_csa_mm2"] = round(m.fat_csa_mm2, 3) if known else None
            row[f"{short}_fat_pct"] = round(100.0 * m.fat_fraction, 3) if known else None
            if m.flag:
                row[f"{short}_fat_flag"] = m.flag
        row["fat_method"] = self.config.method
        bright = self.config.fat_is_bright
        row["fat_contrast"] = "unknown" if bright is None else ("bright" if bright else "dark")
        return row


def split_threshold(values: np.ndarray, method: str) -> tuple[float, float, float]:
    """Threshold between the two intensity classes, and the two class centres."""
    # imported here: scikit-learn, scikit-image and scipy.stats take about a second to
    # import, which every run would pay although the default method needs none of them
    from skimage.filters import threshold_otsu
    from sklearn.cluster import KMeans
    from sklearn.mixture import GaussianMixture

    v = values.astype(np.float64).reshape(-1, 1)
    if method == "otsu":
        t = float(threshold_otsu(v.ravel()))
        lo, hi = v[v <= t], v[v > t]
        return t, float(lo.mean()), float(hi.mean()) if hi.size else t
    if method == "kmeans":
        init = np.percentile(v, [25, 97.5]).reshape(2, 1)  # lean bulk, brightest tail
        km = KMeans(n_clusters=2, init=init, n_init=1).fit(v)
        c = np.sort(km.cluster_centers_.ravel())
        return float(c.mean()), float(c[0]), float(c[1])
    gmm = GaussianMixture(n_components=2, random_state=0).fit(v)
    order = np.argsort(gmm.means_.ravel())
    lo, hi = (float(m) for m in gmm.means_.ravel()[order])
    grid = np.linspace(lo, hi, 512).reshape(-1, 1)  # the decision boundary between the means
    post = gmm.predict_proba(grid)[:, order[1]]
    t = float(grid[np.argmax(post >= 0.5), 0]) if (post >= 0.5).any() else hi
    return t, lo, hi


def bimodality_coefficient(values: np.ndarray) -> float:
    """Sarle's bimodality coefficient: about 1/3 for a Gaussian, above 5/9 for two classes
    or a long tail (a few fat pixels in lean muscle)."""
    from scipy import stats

    n = values.size
    g = stats.skew(values)
    k = stats.kurtosis(values)  # excess kurtosis
    return float((g * g + 1) / (k + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3))))


def separate_fat(data: np.ndarray, labels: np.ndarray, geometry: Geometry,
                 config: FatConfig | None = None, body: np.ndarray | None = None
                 ) -> FatResult:
    """Fat fraction, fat and lean CSA of MF and ES on each side, and the fat mask.

    Whether fat is bright comes from ``config`` or, when it says None, from the slice
    (subcutaneous fat against muscle, :mod:`.fat_contrast`; ``body`` is the body mask when
    known). Where the contrast cannot be told, every muscle's fat is left empty and flagged
    rather than computed the wrong way round.
    """
    config = config or FatConfig()
    data = np.asarray(data, np.float64)
    if data.shape != labels.shape or labels.shape != geometry.shape:
        raise ValueError("image, labels and geometry must share one grid")
    if config.fat_is_bright is None:
        bright = fat_is_bright(SliceImage(data.astype(np.float32), geometry), labels, body)
        if bright is None:
            return _unknown_contrast(labels, geometry, config)
        config = replace(config, fat_is_bright=bright)
    if config.method in CONTINUOUS_METHODS:
        return _separate_continuous(data, labels, geometry, config, body)
    sign = 1.0 if config.fat_is_bright else -1.0
    fat_mask = np.zeros(labels.shape, bool)
    muscles: dict[int, MuscleFat] = {}
    for value in FAT_LABELS:
        inside = labels == value
        n = int(inside.sum())
        csa = n * geometry.pixel_area_mm2
        if n < config.min_pixels:
            muscles[value] = MuscleFat(value, csa, 0.0, "too small" if n else "absent")
            continue
        values = sign * data[inside]
        t, lo, hi = split_threshold(values, config.method)
        is_fat = values > t
        spread = np.sqrt((values[~is_fat].var() + (values[is_fat].var() if is_fat.any()
                                                    else 0.0)) / 2) or 1e-9
        if (hi - lo) / spread < config.min_separation and (
                bimodality_coefficient(values) < config.min_bimodality):
            # one population: no split; report no separable fat and say so
            muscles[value] = MuscleFat(value, csa, 0.0, "not bimodal")
            continue
        fat_mask[inside] = is_fat
        muscles[value] = MuscleFat(value, csa, float(is_fat.mean()))
    return FatResult(muscles=muscles, fat_mask=fat_mask, config=config)


def _unknown_contrast(labels: np.ndarray, geometry: Geometry, config: FatConfig
                      ) -> FatResult:
    muscles = {v: MuscleFat(v, int((labels == v).sum()) * geometry.pixel_area_mm2, float("nan"),
                            "fat contrast unknown") for v in FAT_LABELS}
    return FatResult(muscles, np.zeros(labels.shape, bool), config)


def _separate_continuous(data: np.ndarray, labels: np.ndarray, geometry: Geometry,
                         config: FatConfig, body: np.ndarray | None) -> FatResult:
    """Mean per-pixel fat fraction of each muscle (``gmm3``, ``calibrated``)."""
    pixels = pixel_fat(data, labels, geometry, config.method, config.fat_is_bright, body=body)
    muscles: dict[int, MuscleFat] = {}
    for value in FAT_LABELS:
        inside = labels == value
        n = int(inside.sum())
        csa = n * geometry.pixel_area_mm2
        if n < config.min_pixels:
            muscles[value] = MuscleFat(value, csa, 0.0, "too small" if n else "absent")
        elif pixels.flag:
            muscles[value] = MuscleFat(value, csa, 0.0, pixels.flag)
        else:
            muscles[value] = MuscleFat(value, csa, float(pixels.fraction[inside].mean()))
    measured = [v for v, m in muscles.items() if not m.flag]
    fat_mask = np.isin(labels, measured) & (pixels.fraction >= 0.5)
    return FatResult(muscles=muscles, fat_mask=fat_mask, config=config)
