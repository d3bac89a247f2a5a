"""The two analyses on joined tables: cohort statistics (measure against age and sex) and the
agreement of two sets of measurements, each with the warnings a reader needs.

Minimum sample sizes, and why:

* a cohort test needs ``MIN_COHORT_CASES`` (10) complete cases. Its p comes from the t
  approximation to the null distribution of a rank correlation, which is poor below about 10
  cases: with 4 cases the exact permutation p cannot go below 2/4! = 0.083, yet t gives 0 for
  any perfect ranking. With 10 cases and one covariate the t test has 7 degrees of freedom.
* the sex test also needs ``MIN_PER_SEX`` (5) cases of each sex: a rank comparison of two
  groups rests on its smaller group, and below 5 that is a handful of people.
* agreement needs ``MIN_CASES`` (4) pairs: its statistics (bias, limits of agreement, ICC) are
  estimates with exact t / F intervals under normality, valid but wide at small n, so they are
  reported with a warning below ``SMALL_SAMPLE`` pairs instead of being withheld.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .stats_methods import P_FLOOR, benjamini_hochberg, bland_altman, icc, partial_spearman
from .stats_table import (
    Row,
    by_case,
    case_key,
    check_columns,
    covariates_by_case,
    join_warnings,
    listing,
    measure_columns,
    numeric_column,
)

#: Fewest complete pairs for which agreement statistics are reported.
MIN_CASES = 4
#: Fewest complete cases for a cohort test (age or sex): see the module docstring.
MIN_COHORT_CASES = 10
#: Fewest cases of each sex for the sex test.
MIN_PER_SEX = 5
#: Below this many cases (or pairs) a result is reported with a small-sample warning.
SMALL_SAMPLE = 20

COHORT_COLUMNS: tuple[str, ...] = ("measure", "n", "n_female", "n_male", "rho_age", "p_age",
                                   "q_age", "rho_sex", "p_sex", "q_sex", "note")


@dataclass(frozen=True)
class Analysis:
    """The rows of a statistics table and the warnings that belong with them."""

    rows: list[dict]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Cohort


def cohort_analysis(measures_rows: Sequence[Row], covariate_rows: Sequence[Row],
                    columns: Sequence[str] | None = None, *,
                    sources: tuple[str, str] = ("measurements", "covariates")) -> Analysis:
    """Cohort statistics (see ``cohort_stats``) and the warnings on how they were obtained.

    Warnings name the measurement cases left out for want of covariates (and covariate ids
    that match nothing), the matched cases missing an age or sex, the measures not tested for
    too few cases, and the measures tested on fewer than ``SMALL_SAMPLE`` cases.
    """
    src_m, src_c = sources
    cov = covariates_by_case(covariate_rows, src_c)
    cols = (measure_columns(measures_rows, src_m) if columns is None
            else check_columns(measures_rows, columns, src_m))
    m_by = by_case(measures_rows, src_m)
    matched_ids = [c for c in m_by if c in cov]
    if not matched_ids:
        raise ValueError(f"no case of {src_m} has a row in {src_c} (ids in {src_m}: "
                         f"{listing(list(m_by), 5)}; in {src_c}: {listing(list(cov), 5)})")
    warnings = join_warnings(m_by, cov, sources)
    incomplete = [c for c in matched_ids if not all(map(math.isfinite, cov[c]))]
    if incomplete:
        warnings.append(f"{len(incomplete)} matched cases have no age or no sex in {src_c} and "
                        f"are left out: {listing(incomplete)}")
    matched = [m_by[c] for c in matched_ids]
    age = np.array([cov[c][0] for c in matched_ids])
    sex = np.array([cov[c][1] for c in matched_ids])
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
    warnings += _sample_warnings(out)
    return Analysis([{k: r[k] for k in COHORT_COLUMNS} for r in out], warnings)


def cohort_stats(measures_rows: Sequence[Row], covariate_rows: Sequence[Row],
                 columns: Sequence[str] | None = None, *,
                 sources: tuple[str, str] = ("measurements", "covariates")) -> list[dict]:
    """One row per measure: n, rho/p/q with age (controlling for sex) and with sex (for age).

    Rows are joined on ``case``; measurement rows without covariates are left out (see
    ``cohort_analysis`` for the warnings saying which), and each test uses the cases complete
    in measure, age and sex (``n``). Sex is 0 = female, 1 = male. ``q_age`` is BH-adjusted
    over the age tests of all measures, ``q_sex`` over the sex tests. Fewer than
    ``MIN_COHORT_CASES`` complete cases, fewer than ``MIN_PER_SEX`` of a sex (sex test only)
    or a constant measure give NaN statistics and a ``note``; when the cohort is one sex (or
    one age) the other test is reported unadjusted, with a note. No p is 0: an underflowing
    tail is reported as ``P_FLOOR`` with a note.
    """
    return cohort_analysis(measures_rows, covariate_rows, columns, sources=sources).rows


def _cohort_tests(x: np.ndarray, age: np.ndarray, sex: np.ndarray) -> dict:
    res = {f"{s}_{t}": math.nan for t in ("age", "sex") for s in ("rho", "p")}
    if x.size < MIN_COHORT_CASES:
        return {**res, "note": f"fewer than {MIN_COHORT_CASES} complete cases: not tested"}
    if np.ptp(x) == 0:
        return {**res, "note": "constant measure"}
    notes = []
    covs = {"age": age, "sex": sex}
    n_female, n_male = int((sex == 0).sum()), int((sex == 1).sum())
    for test, other in (("age", "sex"), ("sex", "age")):
        if np.ptp(covs[test]) == 0:
            notes.append(f"{test} constant: no {test} test")
            continue
        if test == "sex" and min(n_female, n_male) < MIN_PER_SEX:
            notes.append(f"fewer than {MIN_PER_SEX} of one sex ({n_female} female, "
                         f"{n_male} male): no sex test")
            continue
        adjust = covs[other]
        if np.ptp(adjust) == 0:
            notes.append(f"{other} constant: {test} test not adjusted for {other}")
            adjust = None
        rho, p, _ = partial_spearman(x, covs[test], adjust)
        res[f"rho_{test}"], res[f"p_{test}"] = rho, p
        if math.isnan(rho):
            notes.append(f"{test} test undefined (collinear ranks)")
        elif math.isclose(rho * rho, 1.0):
            notes.append(f"rho_{test} = {rho:+.0f}, a perfect rank correlation: t is infinite, "
                         f"p_{test} is shown as the bound < {P_FLOOR:.2g}; check the measure "
                         f"is not derived from {test}")
        elif p <= P_FLOOR:
            notes.append(f"p_{test} < {P_FLOOR:.2g} (the t tail underflows; the bound is "
                         f"shown)")
    return {**res, "note": "; ".join(notes)}


def _sample_warnings(rows: Sequence[dict]) -> list[str]:
    untested = [r["measure"] for r in rows if r["n"] < MIN_COHORT_CASES]
    out = []
    if untested:
        ns = sorted({r["n"] for r in rows if r["n"] < MIN_COHORT_CASES})
        out.append(f"{len(untested)} of {len(rows)} measures have fewer than "
                   f"{MIN_COHORT_CASES} complete cases (n = {listing(ns)}) and were not tested: "
                   f"a rank correlation's p is not usable on so few cases")
    no_sex = [r["measure"] for r in rows if r["n"] >= MIN_COHORT_CASES
              and "of one sex" in r["note"]]
    if no_sex:
        out.append(f"sex test not run for {len(no_sex)} measures: fewer than {MIN_PER_SEX} "
                   f"cases of one sex")
    small = [r for r in rows if MIN_COHORT_CASES <= r["n"] < SMALL_SAMPLE]
    if small:
        out.append(f"small sample: {len(small)} measures were tested on fewer than "
                   f"{SMALL_SAMPLE} cases (n = {_span(small)}); power is low and the p-values "
                   f"rest on the t approximation")
    return out


def _span(rows: Sequence[dict]) -> str:
    low, high = min(r["n"] for r in rows), max(r["n"] for r in rows)
    return str(low) if low == high else f"{low}-{high}"


# ---------------------------------------------------------------------------------------------
# Agreement


def agreement_analysis(rows_a: Sequence[Row], rows_b: Sequence[Row],
                       columns: Sequence[str] | None = None, *,
                       sources: tuple[str, str] = ("a", "b")) -> Analysis:
    """Agreement statistics (see ``agreement``) and the warnings on how they were obtained.

    Warnings name the cases found in only one of the two tables (left out) and the measures
    compared on fewer than ``SMALL_SAMPLE`` pairs.
    """
    src_a, src_b = sources
    if columns is None:
        in_b = set(measure_columns(rows_b, src_b))
        cols = [c for c in measure_columns(rows_a, src_a) if c in in_b]
        if not cols:
            raise ValueError(f"{src_a} and {src_b} have no measure column in common")
    else:
        cols = check_columns(rows_a, columns, src_a)
        check_columns(rows_b, columns, src_b)
    a_by, b_by = by_case(rows_a, src_a), by_case(rows_b, src_b)
    common = [c for c in a_by if c in b_by]
    if not common:
        raise ValueError(f"{src_a} and {src_b} have no case in common (ids in {src_a}: "
                         f"{listing(list(a_by), 5)}; in {src_b}: {listing(list(b_by), 5)})")
    warnings = join_warnings(a_by, b_by, sources, right_dropped=True)
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
    few = [r for r in out if r["n"] < MIN_CASES]
    if few:
        warnings.append(f"{len(few)} of {len(out)} measures have fewer than {MIN_CASES} "
                        f"complete pairs and get no statistics")
    small = [r for r in out if MIN_CASES <= r["n"] < SMALL_SAMPLE]
    if small:
        warnings.append(f"small sample: {len(small)} measures were compared on fewer than "
                        f"{SMALL_SAMPLE} pairs (n = {_span(small)}); limits of agreement and "
                        f"ICCs are imprecise, read their confidence intervals")
    return Analysis(out, warnings)


def agreement(rows_a: Sequence[Row], rows_b: Sequence[Row],
              columns: Sequence[str] | None = None, *,
              sources: tuple[str, str] = ("a", "b")) -> list[dict]:
    """One row per measure column common to both tables: Bland-Altman (b - a) and ICCs.

    Rows are joined on ``case``; each measure uses the cases present in both with a value in
    both (``n``). Fewer than ``MIN_CASES`` pairs give NaN statistics and a ``note``.
    """
    return agreement_analysis(rows_a, rows_b, columns, sources=sources).rows


def matched_covariates(measures: Sequence[Row], covariates: Sequence[Row]
                       ) -> tuple[list[Row], np.ndarray, np.ndarray]:
    """Measurement rows that have a covariate row, with their ages and sex codes."""
    cov = covariates_by_case(covariates)
    matched = [r for c, r in by_case(measures, "measurements").items() if c in cov]
    age = np.array([cov[case_key(r.get("case"))][0] for r in matched])
    sex = np.array([cov[case_key(r.get("case"))][1] for r in matched])
    return matched, age, sex
