"""The statistical methods behind ``paraspinal stats`` and ``paraspinal agree``, on arrays.

Each is checked against a reference implementation (pingouin, scipy) in tests/test_stats.py.
A p-value is never 0: where the t or F tail underflows (or the correlation is perfect) it is
reported as ``P_FLOOR``, an upper bound, so that no table claims certainty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

#: Smallest p-value reported: the smallest normal double. A smaller (or zero) p from the
#: t or F tail is an underflow, not a result, and is reported as this upper bound.
P_FLOOR: float = float(np.finfo(float).tiny)


def bounded_p(p: float) -> float:
    """``p`` raised to ``P_FLOOR`` when it underflowed; NaN stays NaN."""
    return p if math.isnan(p) else max(float(p), P_FLOOR)


def partial_spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                     covar: Sequence[float] | np.ndarray | None = None
                     ) -> tuple[float, float, int]:
    """Spearman partial correlation of ``x`` and ``y`` controlling for ``covar``.

    ``covar`` is one covariate (length n), several (n x k), or None (plain Spearman). Rows
    with any missing value are dropped. The ranks of x and y are residualised on the ranks
    of the covariates (with intercept) by least squares and the Pearson r of the residuals
    is tested with t on n - 2 - k degrees of freedom: pingouin's
    ``partial_corr(method="spearman")``. Returns ``(rho, p, n)``; rho and p are NaN when
    undefined (too few rows, or a constant variable); p is at least ``P_FLOOR``.
    """
    xs = np.asarray(x, dtype=float).reshape(-1)
    ys = np.asarray(y, dtype=float).reshape(-1)
    cs = (np.empty((xs.size, 0)) if covar is None
          else np.asarray(covar, dtype=float).reshape(xs.size, -1))
    if ys.size != xs.size:
        raise ValueError(f"x and y differ in length ({xs.size} and {ys.size})")
    ok = np.isfinite(xs) & np.isfinite(ys) & np.isfinite(cs).all(axis=1)
    n, k = int(ok.sum()), cs.shape[1]
    dof = n - 2 - k
    nan = (math.nan, math.nan, n)
    if dof < 1:
        return nan
    data = np.column_stack([xs[ok], ys[ok], cs[ok]])
    if (np.ptp(data, axis=0) == 0).any():
        return nan
    ranks = sps.rankdata(data, axis=0)
    design = np.column_stack([np.ones(n), ranks[:, 2:]])
    coef, *_ = np.linalg.lstsq(design, ranks[:, :2], rcond=None)
    res = ranks[:, :2] - design @ coef
    scale = np.sqrt((res**2).sum(axis=0))
    if (scale <= 1e-9 * n).any():
        return nan
    r = float(np.clip((res[:, 0] @ res[:, 1]) / (scale[0] * scale[1]), -1.0, 1.0))
    if math.isclose(r * r, 1.0):
        return r, P_FLOOR, n
    t = r * math.sqrt(dof / (1.0 - r * r))
    return r, bounded_p(float(2.0 * sps.t.sf(abs(t), dof))), n


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (monotone, capped at 1) of a 1-D array of p-values.

    NaN p-values (untested measures) stay NaN and do not count towards the family size.
    """
    p = np.asarray(pvalues, dtype=float).reshape(-1)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if not ok.any():
        return q
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    q[ok] = sps.false_discovery_control(p[ok], method="bh")
    return q


def pairs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """The entries of ``a`` and ``b`` (same length) where both are finite."""
    av = np.asarray(a, dtype=float).reshape(-1)
    bv = np.asarray(b, dtype=float).reshape(-1)
    if av.size != bv.size:
        raise ValueError(f"a and b differ in length ({av.size} and {bv.size})")
    ok = np.isfinite(av) & np.isfinite(bv)
    return av[ok], bv[ok]


def bland_altman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict:
    """Bland-Altman statistics of ``b - a`` over the pairs where both are present.

    Returns n, mean_a, mean_b, bias (mean of b - a), sd (of the differences, n - 1),
    loa_lower / loa_upper (bias -/+ 1.96 sd) and bias_ci_low / bias_ci_high (95 % t
    interval of the bias). Statistics are NaN when fewer than two pairs are complete.
    """
    av, bv = pairs(a, b)
    n = av.size
    out = {"n": n, "mean_a": math.nan, "mean_b": math.nan, "bias": math.nan, "sd": math.nan,
           "loa_lower": math.nan, "loa_upper": math.nan,
           "bias_ci_low": math.nan, "bias_ci_high": math.nan}
    if n < 2:
        return out
    d = bv - av
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(sps.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    out.update(mean_a=float(av.mean()), mean_b=float(bv.mean()), bias=bias, sd=sd,
               loa_lower=bias - 1.96 * sd, loa_upper=bias + 1.96 * sd,
               bias_ci_low=bias - half, bias_ci_high=bias + half)
    return out


def icc(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict:
    """ICC(2,1) (absolute agreement) and ICC(3,1) (consistency) of two raters, with 95 % CIs.

    From the two-way ANOVA mean squares of the complete pairs (Shrout & Fleiss 1979; the
    ICC(2,1) interval is McGraw & Wong's), as pingouin's ``intraclass_corr`` computes them.
    Returns n, icc2, icc2_ci_low, icc2_ci_high, icc3, icc3_ci_low, icc3_ci_high and the F
    test of ICC > 0 (f, df1, df2, p, at least ``P_FLOOR``); NaN where undefined (fewer than
    3 cases, or no variation at all).
    """
    av, bv = pairs(a, b)
    n, k = av.size, 2
    keys = ("icc2", "icc2_ci_low", "icc2_ci_high", "icc3", "icc3_ci_low", "icc3_ci_high",
            "f", "df1", "df2", "p")
    out: dict = {"n": n, **{key: math.nan for key in keys}}
    y = np.column_stack([av, bv])
    if n < 3 or np.ptp(y) == 0:
        return out
    grand = y.mean()
    ss_rows = k * ((y.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((y.mean(axis=0) - grand) ** 2).sum()
    ss_total = ((y - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    # rounding noise, not disagreement: the raters differ by a constant, or not at all
    ss_err = 0.0 if ss_err <= 1e-12 * ss_total else ss_err
    ss_cols = 0.0 if ss_cols <= 1e-12 * ss_total else ss_cols
    df1, df2 = n - 1, (n - 1) * (k - 1)
    msr, msc, mse = ss_rows / df1, ss_cols / (k - 1), ss_err / df2
    alpha = 0.05
    with np.errstate(divide="ignore", invalid="ignore"):
        icc2 = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        icc3 = (msr - mse) / (msr + (k - 1) * mse)
        f3 = np.float64(msr) / mse
        f3l = f3 / sps.f.ppf(1 - alpha / 2, df1, df2)
        f3u = f3 * sps.f.ppf(1 - alpha / 2, df2, df1)
        fj = np.float64(msc) / mse
        vn = df2 * (k * icc2 * fj + n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        vd = df1 * k**2 * icc2**2 * fj**2 + (n * (1 + (k - 1) * icc2) - k * icc2) ** 2
        v = vn / vd
        f2u = sps.f.ppf(1 - alpha / 2, n - 1, v)
        f2l = sps.f.ppf(1 - alpha / 2, v, n - 1)
        denom = k * msc + (k * n - k - n) * mse
        out.update(
            icc2=icc2, icc3=icc3,
            icc2_ci_low=n * (msr - f2u * mse) / (f2u * denom + n * msr),
            icc2_ci_high=n * (f2l * msr - mse) / (denom + n * f2l * msr),
            icc3_ci_low=(f3l - 1) / (f3l + k - 1), icc3_ci_high=(f3u - 1) / (f3u + k - 1),
            f=f3, df1=df1, df2=df2, p=bounded_p(float(sps.f.sf(f3, df1, df2))),
        )
    if mse == 0:  # the intervals' limits as F grows without bound
        out.update(icc3_ci_low=1.0, icc3_ci_high=1.0)
        if msc == 0:
            out.update(icc2_ci_low=1.0, icc2_ci_high=1.0)
    return {key: (int(v) if key in ("n", "df1", "df2") else float(v)) for key, v in out.items()}
