"""Fat % of every fat method on a real in-phase image against the Dixon fat fraction.

lpm_tum01 is a Dixon scan: its water W and fat F images give each muscle's signal fat
fraction F / (W + F) (:mod:`.dixon`), the reference. The fat methods see what a clinical
scan shows, the in-phase image W + F (fat bright, like T1w), bias-corrected by N4 on the
body mask as :func:`.measure.measure_slice` does, with the TRUE (manual) labels, so the
numbers measure fat separation alone. Pooled over MF and ES on both sides and the slices:
mean absolute error and Bland-Altman bias and 95 % limits of agreement (percentage points,
method minus Dixon), Spearman's rho, and ICC(2,1) (two-way random effects, absolute
agreement, single measure; Shrout & Fleiss 1979), which counts a bias against a method.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from .bench_real import write_report
from .core.errors import InputError
from .core.labels import BY_VALUE, FAT_LABELS
from .dixon import dixon_columns, pair_dixon
from .fat import METHODS, FatConfig, separate_fat
from .preprocess.n4 import N4Config, n4_correct
from .realdata import RealSeries, default_real_data_dir, read_series_slice, real_series

CASE = "lpm_tum01"


def icc_2_1(ratings: np.ndarray) -> float:
    """ICC(2,1) of an n targets x k raters table (Shrout & Fleiss 1979, case 2, single
    rating): ``(BMS - EMS) / (BMS + (k-1) EMS + k (JMS - EMS) / n)`` from the two-way ANOVA
    mean squares between targets (BMS), between raters (JMS) and residual (EMS)."""
    x = np.asarray(ratings, np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(f"need at least 2 targets x 2 raters, got shape {x.shape}")
    n, k = x.shape
    grand = x.mean()
    ss_targets = k * ((x.mean(axis=1) - grand) ** 2).sum()
    ss_raters = n * ((x.mean(axis=0) - grand) ** 2).sum()
    ss_error = ((x - grand) ** 2).sum() - ss_targets - ss_raters
    bms = ss_targets / (n - 1)
    jms = ss_raters / (k - 1)
    ems = ss_error / ((n - 1) * (k - 1))
    return float((bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n))


def agreement(measured: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """n, MAE, Spearman rho, ICC(2,1), Bland-Altman bias and 95 % limits (measured minus
    reference, ``bias ± 1.96 SD`` of the differences)."""
    m = np.asarray(measured, np.float64)
    r = np.asarray(reference, np.float64)
    d = m - r
    sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
    bias = float(d.mean())
    return {"n": int(d.size), "mae_points": float(np.abs(d).mean()),
            "spearman": float(stats.spearmanr(m, r).statistic),
            "icc_2_1": icc_2_1(np.column_stack([m, r])),
            "bias_points": bias, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}


def _lpm_series(root: Path | None) -> tuple[RealSeries, RealSeries]:
    found = {s.contrast: s for s in real_series(root) if s.case == CASE}
    if "water" not in found or "fat" not in found:
        raise InputError(Path(root or default_real_data_dir()) / CASE,
                         "the Dixon water and fat images with labels are not here")
    return found["water"], found["fat"]


def bench_fat_real(root: Path | None = None, methods: Sequence[str] = METHODS,
                   slices: Sequence[int] | None = None, n4: N4Config | None = None,
                   pairs: list[dict] | None = None) -> list[dict]:
    """One row per method: agreement with the Dixon fat fraction (see the module doc),
    muscles flagged by the method (they count with the fat % it reports, 0) and seconds
    of fat separation per slice (N4, shared by all methods, is timed as its own row).

    ``slices`` restricts the slices (default all 29); a given ``pairs`` list receives one
    dict per method, slice and muscle (``method``, ``k``, ``muscle``, ``measured``,
    ``dixon``).
    """
    water_series, fat_series = _lpm_series(root)
    ks = range(water_series.n_slices()) if slices is None else slices
    measured: dict[str, list[float]] = {m: [] for m in methods}
    flags = dict.fromkeys(methods, 0)
    seconds = dict.fromkeys(methods, 0.0)
    reference: list[float] = []
    n4_seconds = 0.0
    for k in ks:
        water, labels = read_series_slice(water_series, k)
        fat, _ = read_series_slice(fat_series, k)
        water, fat, _notes = pair_dixon(water, fat)
        ref = dixon_columns(water, fat, labels, water.geometry)
        inphase = water.with_data((water.data.astype(np.float64) + fat.data).astype(np.float32))
        t = time.perf_counter()
        corrected = n4_correct(inphase, config=n4 or N4Config()).corrected.data
        n4_seconds += time.perf_counter() - t
        present = [v for v in FAT_LABELS if ref[f"{BY_VALUE[v].short}_ff_pct"] is not None]
        reference += [ref[f"{BY_VALUE[v].short}_ff_pct"] for v in present]
        for method in methods:
            t = time.perf_counter()
            result = separate_fat(corrected, labels, water.geometry, FatConfig(method=method))
            seconds[method] += time.perf_counter() - t
            for v in present:
                pct = 100.0 * result.muscles[v].fat_fraction
                measured[method].append(pct)
                flags[method] += bool(result.muscles[v].flag)
                if pairs is not None:
                    pairs.append({"method": method, "k": k, "muscle": BY_VALUE[v].short,
                                  "measured": pct,
                                  "dixon": ref[f"{BY_VALUE[v].short}_ff_pct"]})
    n_slices = len(list(ks))
    rows = []
    for method in methods:
        row = {"method": method, **agreement(measured[method], reference),
               "flagged": flags[method], "s_per_slice": seconds[method] / n_slices}
        rows.append(row)
    rows.append({"method": "(N4 bias correction, shared)", "s_per_slice": n4_seconds / n_slices})
    return rows


def write_fat_real_report(rows: Sequence[dict], out_dir: str | os.PathLike[str],
                          header: str = "") -> tuple[Path, Path]:
    """``bench_fat_real.csv`` and ``bench_fat_real.md`` (``header`` above the table)."""
    return write_report(rows, out_dir, "bench_fat_real", header)
