"""Cohort statistics and measurement agreement for the tables written by ``paraspinal run``.

Two questions are asked of a measurements table:

* **Cohort** (``paraspinal stats``): how does each measure (CSA, lean CSA, fat %, asymmetry)
  relate to age and to sex? As in the paper, each measure gets a Spearman partial correlation
  with age controlling for sex, and with sex controlling for age, with p-values corrected for
  the number of measures by Benjamini-Hochberg.
* **Agreement** (``paraspinal agree``): how closely do two sets of measurements of the same
  cases agree (automatic against corrected, or two annotators)? Bland-Altman bias and limits
  of agreement, and the intraclass correlation ICC(2,1) and ICC(3,1).

Conventions (also written into every table's "about" sheet and markdown file):

* sex is coded 0 = female, 1 = male, so ``rho_sex > 0`` means the measure is higher in men;
* q-values are Benjamini-Hochberg adjusted within one family per covariate: ``q_age`` over
  the age tests of all measures in the table, ``q_sex`` over the sex tests of all measures;
* differences are ``b - a`` (second table minus first), so a positive bias means the second
  set of measurements reads higher.

Everything here is headless: plots are drawn on a bare ``matplotlib.figure.Figure`` with the
Agg canvas (no pyplot, no display) and all files are written atomically.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats as sps

from . import __version__
from .core.atomic import atomic_path, write_text_atomic
from .core.labels import LABELS
from .export import columns_of, markdown_table, write_csv, write_xlsx

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Row = Mapping[str, object]

#: Structure names a measure column starts with (``MF_L_fat_pct`` -> ``MF``).
MUSCLES: tuple[str, ...] = tuple(dict.fromkeys(lab.muscle for lab in LABELS))
#: Unit suffixes of measure columns.
MEASURE_SUFFIXES: tuple[str, ...] = ("_mm2", "_pct")
#: Fewest complete cases for which a statistic is reported.
MIN_CASES = 4
#: Plot grid: panels per row, panel size in inches, resolution.
GRID_COLUMNS = 4
PANEL_INCHES: tuple[float, float] = (3.0, 2.5)
DPI = 100

_MISSING = {"", "na", "n/a", "nan", "none", "null"}
_SEX = {"f": 0, "female": 0, "0": 0, "m": 1, "male": 1, "1": 1}
_SEX_COLORS = {0: "#c0392b", 1: "#2471a3", None: "#999999"}
_SEX_NAMES = {0: "female", 1: "male", None: "sex unknown"}

COHORT_CONVENTIONS = (
    "Spearman partial correlation (ranks residualised on the covariate's ranks, t-test with "
    "n-2-k degrees of freedom): rho_age controls for sex, rho_sex controls for age. "
    "Sex is coded 0 = female, 1 = male: rho_sex > 0 means higher in men. "
    "q-values are Benjamini-Hochberg adjusted within each covariate: q_age over the age tests "
    "of all measures, q_sex over the sex tests of all measures."
)
AGREEMENT_CONVENTIONS = (
    "Differences are b - a (second table minus first): a positive bias means b reads higher. "
    "Limits of agreement are bias -/+ 1.96 SD of the differences; bias_ci is the 95 % t "
    "interval of the mean difference. ICC(2,1): two-way random effects, absolute agreement, "
    "single rater; ICC(3,1): two-way mixed effects, consistency, single rater (Shrout & Fleiss "
    "1979, McGraw & Wong 1996), with 95 % confidence intervals."
)


# ---------------------------------------------------------------------------------------------
# Reading tables


def read_table(path: str | os.PathLike[str], sheet: str | None = None) -> list[dict]:
    """Rows of a CSV or XLSX table as dicts: numbers as float, empty cells None.

    The ``case`` column is kept as text (``12`` and ``12.0`` both become ``"12"``). For XLSX
    the sheet is ``sheet``, else "measurements" when there is one, else the first sheet.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return _read_csv(p)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(p, sheet)
    raise ValueError(f"{p}: unsupported table format {p.suffix!r} (use .csv or .xlsx)")


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        text = fh.read()
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
            text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    header = next(reader, None)
    if header is None:
        return []
    names = [h.strip() for h in header]
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        rows.append({name: _parse_text(v, name) for name, v in zip(names, values, strict=False)
                     if name})
    return rows


def _read_xlsx(path: Path, sheet: str | None) -> list[dict]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet is not None:
            if sheet not in wb.sheetnames:
                raise ValueError(f"{path}: no sheet {sheet!r} (sheets: {wb.sheetnames})")
            ws = wb[sheet]
        else:
            ws = wb["measurements"] if "measurements" in wb.sheetnames else wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        header = next(it, None)
        if header is None:
            return []
        names = ["" if h is None else str(h).strip() for h in header]
        rows = []
        for values in it:
            if values is None or all(v is None or v == "" for v in values):
                continue
            rows.append({name: _parse_cell(v, name) for name, v in zip(names, values,
                                                                       strict=False) if name})
        return rows
    finally:
        wb.close()


def _parse_text(text: str, column: str) -> object:
    """A CSV cell: None when empty or a missing-value token, float when numeric, else text."""
    s = text.strip()
    if column == "case":
        return s or None
    if s.lower() in _MISSING:
        return None
    try:
        value = float(s)
    except ValueError:
        return s
    return None if math.isnan(value) else value


def _parse_cell(value: object, column: str) -> object:
    """An XLSX cell: numbers (not booleans) become float, text is parsed like CSV."""
    if value is None:
        return None
    if column == "case":
        return case_key(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, str):
        return _parse_text(value, column)
    return str(value)


def case_key(value: object) -> str | None:
    """A case id as text, so that ``12``, ``12.0`` and ``" 12"`` join with each other."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def measure_columns(rows: Sequence[Row], source: str = "measurements") -> list[str]:
    """Measure columns of a table: ``<SP|DI|PS|MF|ES>_..._<mm2|pct>``, in table order.

    Geometry columns such as ``pixel_area_mm2`` are not measures. Raises ValueError, naming
    ``source`` and the column, when a measure column holds a non-numeric value.
    """
    cols = [c for c in columns_of(rows)
            if c.endswith(MEASURE_SUFFIXES) and c.split("_", 1)[0] in MUSCLES]
    for c in cols:
        numeric_column(rows, c, source)
    return cols


def numeric_column(rows: Sequence[Row], column: str, source: str = "table") -> np.ndarray:
    """One column as a float array, NaN where missing; ValueError on a non-numeric value."""
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                             np.floating)):
            raise ValueError(f"{source}: column {column!r} has a non-numeric value {value!r} "
                             f"(case {row.get('case')!r})")
        out[i] = float(value)
    return out


def sex_code(value: object) -> int | None:
    """Sex as 0 = female, 1 = male from M/F, male/female or 0/1 (any case); None if missing."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if float(value) in (0.0, 1.0):
            return int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in _MISSING:
            return None
        if text in _SEX:
            return _SEX[text]
    raise ValueError(f"sex value {value!r} is not one of M/F, male/female or 0/1")


def covariates_by_case(rows: Sequence[Row], source: str = "covariates"
                       ) -> dict[str, tuple[float, float]]:
    """``case -> (age, sex)`` from a covariates table; NaN where a value is missing.

    Column names ``case``, ``age`` and ``sex`` are matched ignoring case.
    """
    names = {c.strip().lower(): c for c in columns_of(rows)}
    for need in ("case", "age", "sex"):
        if need not in names:
            raise ValueError(f"{source}: no {need!r} column (columns: {list(names.values())})")
    ages = numeric_column(rows, names["age"], source)
    out: dict[str, tuple[float, float]] = {}
    for row, age in zip(rows, ages, strict=True):
        case = case_key(row.get(names["case"]))
        if case is None:
            continue
        if case in out:
            raise ValueError(f"{source}: case {case!r} appears more than once")
        try:
            sex = sex_code(row.get(names["sex"]))
        except ValueError as err:
            raise ValueError(f"{source}: column {names['sex']!r}, case {case!r}: {err}") from None
        out[case] = (float(age), np.nan if sex is None else float(sex))
    return out


def _by_case(rows: Sequence[Row], source: str) -> dict[str, Row]:
    out: dict[str, Row] = {}
    for row in rows:
        case = case_key(row.get("case"))
        if case is None:
            continue
        if case in out:
            raise ValueError(f"{source}: case {case!r} appears more than once")
        out[case] = row
    return out


def _check_columns(rows: Sequence[Row], columns: Iterable[str], source: str) -> list[str]:
    present = set(columns_of(rows))
    cols = list(columns)
    for c in cols:
        if c not in present:
            raise ValueError(f"{source}: no column {c!r}")
        numeric_column(rows, c, source)
    return cols


# ---------------------------------------------------------------------------------------------
# Statistics


def partial_spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                     covar: Sequence[float] | np.ndarray | None = None
                     ) -> tuple[float, float, int]:
    """Spearman partial correlation of ``x`` and ``y`` controlling for ``covar``.

    ``covar`` is one covariate (length n), several (n x k), or None (plain Spearman). Rows
    with any missing value are dropped. The ranks of x and y are residualised on the ranks
    of the covariates (with intercept) by least squares and the Pearson r of the residuals
    is tested with t on n - 2 - k degrees of freedom: pingouin's
    ``partial_corr(method="spearman")``. Returns ``(rho, p, n)``; rho and p are NaN when
    undefined (too few rows, or a constant variable).
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
        return r, 0.0, n
    t = r * math.sqrt(dof / (1.0 - r * r))
    return r, float(2.0 * sps.t.sf(abs(t), dof)), n


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (monotone, capped at 1) of a 1-D array of p-values.

    NaN p-values (untested measures) stay NaN and do not count towards the family size.
    """
    p = np.asarray(pvalues, dtype=float).reshape(-1)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    if ((pv < 0) | (pv > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adjusted
    q[ok] = out
    return q


def cohort_stats(measures_rows: Sequence[Row], covariate_rows: Sequence[Row],
                 columns: Sequence[str] | None = None, *,
                 sources: tuple[str, str] = ("measurements", "covariates")) -> list[dict]:
    """One row per measure: n, rho/p/q with age (controlling for sex) and with sex (for age).

    Rows are joined on ``case``; measurement rows without covariates are left out, and each
    test uses the cases complete in measure, age and sex (``n``). Sex is 0 = female,
    1 = male. ``q_age`` is BH-adjusted over the age tests of all measures, ``q_sex`` over
    the sex tests. Fewer than ``MIN_CASES`` complete cases or a constant measure give NaN
    statistics and a ``note``; when the cohort is one sex (or one age) the other test is
    reported unadjusted, with a note.
    """
    src_m, src_c = sources
    cov = covariates_by_case(covariate_rows, src_c)
    cols = (measure_columns(measures_rows, src_m) if columns is None
            else _check_columns(measures_rows, columns, src_m))
    matched = [r for c, r in _by_case(measures_rows, src_m).items() if c in cov]
    if not matched:
        raise ValueError(f"no case of {src_m} has a row in {src_c}")
    age = np.array([cov[case_key(r.get("case"))][0] for r in matched])
    sex = np.array([cov[case_key(r.get("case"))][1] for r in matched])
    out = []
    for col in cols:
        x = numeric_column(matched, col, src_m)
        ok = np.isfinite(x) & np.isfinite(age) & np.isfinite(sex)
        row: dict = {"measure": col, "n": int(ok.sum()),
                     "n_female": int((sex[ok] == 0).sum()), "n_male": int((sex[ok] == 1).sum())}
        row.update(_cohort_tests(x[ok], age[ok], sex[ok]))
        out.append(row)
    for test in ("age", "sex"):
        q = benjamini_hochberg([r[f"p_{test}"] for r in out])
        for r, qv in zip(out, q, strict=True):
            r[f"q_{test}"] = float(qv)
    order = ["measure", "n", "n_female", "n_male", "rho_age", "p_age", "q_age",
             "rho_sex", "p_sex", "q_sex", "note"]
    return [{k: r[k] for k in order} for r in out]


def _cohort_tests(x: np.ndarray, age: np.ndarray, sex: np.ndarray) -> dict:
    res = {f"{s}_{t}": math.nan for t in ("age", "sex") for s in ("rho", "p")}
    if x.size < MIN_CASES:
        return {**res, "note": f"fewer than {MIN_CASES} complete cases"}
    if np.ptp(x) == 0:
        return {**res, "note": "constant measure"}
    notes = []
    covs = {"age": age, "sex": sex}
    for test, other in (("age", "sex"), ("sex", "age")):
        if np.ptp(covs[test]) == 0:
            notes.append(f"{test} constant: no {test} test")
            continue
        adjust = covs[other]
        if np.ptp(adjust) == 0:
            notes.append(f"{other} constant: {test} test not adjusted for {other}")
            adjust = None
        rho, p, _ = partial_spearman(x, covs[test], adjust)
        res[f"rho_{test}"], res[f"p_{test}"] = rho, p
        if math.isnan(rho):
            notes.append(f"{test} test undefined (collinear ranks)")
    return {**res, "note": "; ".join(notes)}


def bland_altman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict:
    """Bland-Altman statistics of ``b - a`` over the pairs where both are present.

    Returns n, mean_a, mean_b, bias (mean of b - a), sd (of the differences, n - 1),
    loa_lower / loa_upper (bias -/+ 1.96 sd) and bias_ci_low / bias_ci_high (95 % t
    interval of the bias). Statistics are NaN when fewer than two pairs are complete.
    """
    av, bv = _pairs(a, b)
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
    test of ICC > 0 (f, df1, df2, p); NaN where undefined (fewer than 3 cases, or no
    variation at all).
    """
    av, bv = _pairs(a, b)
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
            f=f3, df1=df1, df2=df2, p=sps.f.sf(f3, df1, df2),
        )
    if mse == 0:  # the intervals' limits as F grows without bound
        out.update(icc3_ci_low=1.0, icc3_ci_high=1.0)
        if msc == 0:
            out.update(icc2_ci_low=1.0, icc2_ci_high=1.0)
    return {key: (int(v) if key in ("n", "df1", "df2") else float(v)) for key, v in out.items()}


def _pairs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    av = np.asarray(a, dtype=float).reshape(-1)
    bv = np.asarray(b, dtype=float).reshape(-1)
    if av.size != bv.size:
        raise ValueError(f"a and b differ in length ({av.size} and {bv.size})")
    ok = np.isfinite(av) & np.isfinite(bv)
    return av[ok], bv[ok]


def agreement(rows_a: Sequence[Row], rows_b: Sequence[Row],
              columns: Sequence[str] | None = None, *,
              sources: tuple[str, str] = ("a", "b")) -> list[dict]:
    """One row per measure column common to both tables: Bland-Altman (b - a) and ICCs.

    Rows are joined on ``case``; each measure uses the cases present in both with a value in
    both (``n``). Fewer than ``MIN_CASES`` pairs give NaN statistics and a ``note``.
    """
    src_a, src_b = sources
    if columns is None:
        in_b = set(measure_columns(rows_b, src_b))
        cols = [c for c in measure_columns(rows_a, src_a) if c in in_b]
        if not cols:
            raise ValueError(f"{src_a} and {src_b} have no measure column in common")
    else:
        cols = _check_columns(rows_a, columns, src_a)
        _check_columns(rows_b, columns, src_b)
    a_by, b_by = _by_case(rows_a, src_a), _by_case(rows_b, src_b)
    common = [c for c in a_by if c in b_by]
    if not common:
        raise ValueError(f"{src_a} and {src_b} have no case in common")
    ra, rb = [a_by[c] for c in common], [b_by[c] for c in common]
    out = []
    for col in cols:
        a, b = numeric_column(ra, col, src_a), numeric_column(rb, col, src_b)
        ba, ic = bland_altman(a, b), icc(a, b)
        row: dict = {"measure": col, **ba,
                     **{k: v for k, v in ic.items() if k.startswith("icc")}, "note": ""}
        if row["n"] < MIN_CASES:
            row.update({k: math.nan for k in row if k not in ("measure", "n", "note")})
            row["note"] = f"fewer than {MIN_CASES} complete pairs"
        elif math.isnan(row["icc2"]):
            row["note"] = "no variation between cases: ICC undefined"
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------
# Plots


def _grid(n_panels: int) -> tuple[Figure, list]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if n_panels < 1:
        raise ValueError("nothing to plot: no columns")
    ncols = min(GRID_COLUMNS, n_panels)
    nrows = math.ceil(n_panels / ncols)
    width, height = ncols * PANEL_INCHES[0], nrows * PANEL_INCHES[1]
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    # fixed margins in inches (a layout engine costs more than the drawing)
    left, right, top, bottom, gap_x, gap_y = 0.65, 0.15, 0.5, 0.45, 0.75, 0.95
    axes_w = (width - left - right - (ncols - 1) * gap_x) / ncols
    axes_h = (height - top - bottom - (nrows - 1) * gap_y) / nrows
    grid = {"left": left / width, "right": 1 - right / width, "top": 1 - top / height,
            "bottom": bottom / height, "wspace": gap_x / axes_w, "hspace": gap_y / axes_h}
    axes = list(fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=grid).ravel())
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def _fmt_p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else f"{p:.2g}"


def plot_against_age(measures: Sequence[Row], covariates: Sequence[Row],
                     columns: Sequence[str] | None, path: str | os.PathLike[str], *,
                     stats: Sequence[Row] | None = None) -> Path:
    """A PNG grid of measure-against-age scatter panels, coloured by sex, rho/p in titles.

    ``columns`` None plots every measure column; ``stats`` (from ``cohort_stats``) saves
    recomputing the titles' statistics.
    """
    cols = measure_columns(measures) if columns is None else list(columns)
    stats = cohort_stats(measures, covariates, cols) if stats is None else stats
    by_measure = {s["measure"]: s for s in stats}
    cov = covariates_by_case(covariates)
    matched = [r for c, r in _by_case(measures, "measurements").items() if c in cov]
    age = np.array([cov[case_key(r.get("case"))][0] for r in matched])
    sex = np.array([cov[case_key(r.get("case"))][1] for r in matched])
    fig, axes = _grid(len(cols))
    for ax, col in zip(axes, cols, strict=True):
        x = numeric_column(matched, col)
        for code in (0, 1, None):
            sel = np.isnan(sex) if code is None else sex == code
            sel &= np.isfinite(x) & np.isfinite(age)
            if sel.any():
                ax.scatter(age[sel], x[sel], s=10, alpha=0.8, color=_SEX_COLORS[code],
                           label=_SEX_NAMES[code], edgecolors="none")
        s = by_measure.get(col, {})
        rho, p = float(s.get("rho_age", math.nan)), float(s.get("p_age", math.nan))
        rho_text = "n/a" if not math.isfinite(rho) else f"{rho:+.2f}"
        ax.set_title(f"{col}\nρ(age|sex) {rho_text}, p {_fmt_p(p)}", fontsize=8)
        ax.set_xlabel("age (years)", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6, loc="best")
    return _save_png(fig, path)


def plot_bland_altman(rows_a: Sequence[Row], rows_b: Sequence[Row],
                      columns: Sequence[str] | None, path: str | os.PathLike[str]) -> Path:
    """A PNG grid of Bland-Altman panels (mean of a and b against b - a, bias and limits)."""
    if columns is None:
        in_b = set(measure_columns(rows_b))
        columns = [c for c in measure_columns(rows_a) if c in in_b]
    a_by, b_by = _by_case(rows_a, "a"), _by_case(rows_b, "b")
    common = [c for c in a_by if c in b_by]
    ra, rb = [a_by[c] for c in common], [b_by[c] for c in common]
    fig, axes = _grid(len(columns))
    for ax, col in zip(axes, columns, strict=True):
        a, b = _pairs(numeric_column(ra, col, "a"), numeric_column(rb, col, "b"))
        ba = bland_altman(a, b)
        ax.scatter((a + b) / 2, b - a, s=10, alpha=0.8, color="#2471a3", edgecolors="none")
        if math.isfinite(ba["bias"]):
            ax.axhline(ba["bias"], color="#333333", lw=1)
            for lim in (ba["loa_lower"], ba["loa_upper"]):
                ax.axhline(lim, color="#c0392b", lw=1, ls="--")
            ax.set_title(f"{col}\nbias {ba['bias']:.3g}, LoA [{ba['loa_lower']:.3g}, "
                         f"{ba['loa_upper']:.3g}]", fontsize=8)
        else:
            ax.set_title(f"{col}\nn = {ba['n']}", fontsize=8)
        ax.axhline(0, color="#999999", lw=0.5)
        ax.set_xlabel("mean of a and b", fontsize=7)
        ax.set_ylabel("b − a", fontsize=7)
        ax.tick_params(labelsize=7)
    return _save_png(fig, path)


# ---------------------------------------------------------------------------------------------
# Tables and the two jobs


def _cells(rows: Sequence[Row]) -> list[dict]:
    """Rows for CSV/XLSX: NaN becomes an empty cell (a spreadsheet has no NaN)."""
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in rows]


def _write_all(rows: list[dict], about: list[dict], conventions: str, title: str,
               out_dir: Path, stem: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = _cells(rows)
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, f"# {title}\n\n{conventions}\n\n{markdown_table(rows)}")
    return {
        "csv": write_csv(cells, out_dir / f"{stem}.csv"),
        "xlsx": write_xlsx({stem: cells, "about": about}, out_dir / f"{stem}.xlsx"),
        "md": md,
    }


def run_stats(measurements_path: str | os.PathLike[str], covariates_path: str | os.PathLike[str],
              out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Cohort statistics of a measurements table against age and sex.

    Writes cohort_stats.csv, .xlsx (with an "about" sheet), .md and cohort_stats.png (every
    measure against age) in ``out_dir``; returns their paths keyed csv, xlsx, md, png.
    """
    mpath, cpath = Path(measurements_path), Path(covariates_path)
    measures, covariates = read_table(mpath), read_table(cpath)
    rows = cohort_stats(measures, covariates, sources=(str(mpath), str(cpath)))
    if not rows:
        raise ValueError(f"{mpath}: no measure columns (<SP|DI|PS|MF|ES>_..._<mm2|pct>)")
    about = [{"item": "conventions", "value": COHORT_CONVENTIONS},
             {"item": "measurements", "value": str(mpath)},
             {"item": "covariates", "value": str(cpath)},
             {"item": "software", "value": f"napari-paraspinal {__version__}"}]
    out = Path(out_dir)
    paths = _write_all(rows, about, COHORT_CONVENTIONS, "Cohort statistics", out,
                       "cohort_stats")
    paths["png"] = plot_against_age(measures, covariates, [r["measure"] for r in rows],
                                    out / "cohort_stats.png", stats=rows)
    return paths


def run_agreement(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Agreement of two measurement tables of the same cases (differences are b - a).

    Writes agreement.csv, .xlsx (with an "about" sheet), .md and agreement.png (Bland-Altman
    panels) in ``out_dir``; returns their paths keyed csv, xlsx, md, png.
    """
    pa, pb = Path(path_a), Path(path_b)
    rows_a, rows_b = read_table(pa), read_table(pb)
    rows = agreement(rows_a, rows_b, sources=(str(pa), str(pb)))
    about = [{"item": "conventions", "value": AGREEMENT_CONVENTIONS},
             {"item": "a", "value": str(pa)},
             {"item": "b", "value": str(pb)},
             {"item": "software", "value": f"napari-paraspinal {__version__}"}]
    out = Path(out_dir)
    paths = _write_all(rows, about, AGREEMENT_CONVENTIONS, "Agreement", out, "agreement")
    paths["png"] = plot_bland_altman(rows_a, rows_b, [r["measure"] for r in rows],
                                     out / "agreement.png")
    return paths
