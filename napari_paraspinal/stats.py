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

The work is split by job: ``stats_read`` reads tables, ``stats_table`` checks and joins them,
``stats_methods`` holds the statistics on arrays, ``stats_analysis`` runs them on joined tables
with minimum sample sizes and warnings, and ``stats_report`` writes tables and plots. This
module re-exports their public names, so ``from napari_paraspinal.stats import ...`` keeps
working.
"""

from __future__ import annotations

from .stats_analysis import (
    MIN_CASES,
    MIN_COHORT_CASES,
    MIN_PER_SEX,
    SMALL_SAMPLE,
    Analysis,
    agreement,
    agreement_analysis,
    cohort_analysis,
    cohort_stats,
)
from .stats_methods import P_FLOOR, benjamini_hochberg, bland_altman, icc, partial_spearman
from .stats_read import CSV_DELIMITERS, TableRow, read_table
from .stats_report import (
    AGREEMENT_CONVENTIONS,
    COHORT_CONVENTIONS,
    DPI,
    GRID_COLUMNS,
    PANEL_INCHES,
    format_p,
    markdown_report,
    plot_against_age,
    plot_bland_altman,
    run_agreement,
    run_stats,
)
from .stats_table import (
    AGE_RANGE,
    MEASURE_SUFFIXES,
    MUSCLES,
    Row,
    case_key,
    covariates_by_case,
    measure_columns,
    numeric_column,
    sex_code,
)

__all__ = [
    "AGE_RANGE", "AGREEMENT_CONVENTIONS", "COHORT_CONVENTIONS", "CSV_DELIMITERS", "DPI",
    "GRID_COLUMNS", "MEASURE_SUFFIXES", "MIN_CASES", "MIN_COHORT_CASES", "MIN_PER_SEX",
    "MUSCLES", "PANEL_INCHES", "P_FLOOR", "SMALL_SAMPLE", "Analysis", "Row", "TableRow",
    "agreement", "agreement_analysis", "benjamini_hochberg", "bland_altman", "case_key",
    "cohort_analysis", "cohort_stats", "covariates_by_case", "format_p", "icc",
    "markdown_report", "measure_columns", "numeric_column", "partial_spearman",
    "plot_against_age", "plot_bland_altman", "read_table", "run_agreement", "run_stats",
    "sex_code",
]
