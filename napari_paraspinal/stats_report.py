"""Tables, warnings and plots written by ``paraspinal stats`` and ``paraspinal agree``.

Plots are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no
display) and every file is written atomically. Warnings go into the Markdown file (which the
CLI prints) and the XLSX "about" sheet.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .core.atomic import atomic_path, write_text_atomic
from .export import markdown_table, write_csv, write_xlsx
from .stats_analysis import (
    MIN_CASES,
    MIN_COHORT_CASES,
    MIN_PER_SEX,
    agreement_analysis,
    cohort_analysis,
    cohort_stats,
    matched_covariates,
)
from .stats_methods import P_FLOOR, bland_altman, pairs
from .stats_read import read_table
from .stats_table import Row, by_case, measure_columns, numeric_column

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Plot grid: panels per row, panel size in inches, resolution.
GRID_COLUMNS = 4
PANEL_INCHES: tuple[float, float] = (3.0, 2.5)
DPI = 100

_SEX_COLORS = {0: "#c0392b", 1: "#2471a3", None: "#999999"}
_SEX_NAMES = {0: "female", 1: "male", None: "sex unknown"}

COHORT_CONVENTIONS = (
    "Spearman partial correlation (ranks residualised on the covariate's ranks, t-test with "
    "n-2-k degrees of freedom): rho_age controls for sex, rho_sex controls for age. "
    "Sex is coded 0 = female, 1 = male: rho_sex > 0 means higher in men. "
    "q-values are Benjamini-Hochberg adjusted within each covariate: q_age over the age tests "
    "of all measures, q_sex over the sex tests of all measures. "
    f"A measure is tested only with at least {MIN_COHORT_CASES} complete cases, and for sex "
    f"with at least {MIN_PER_SEX} of each sex. No p is 0: a tail that underflows is reported "
    f"as the bound {P_FLOOR:.2g} (shown as < {P_FLOOR:.2g})."
)
AGREEMENT_CONVENTIONS = (
    "Differences are b - a (second table minus first): a positive bias means b reads higher. "
    "Limits of agreement are bias -/+ 1.96 SD of the differences; bias_ci is the 95 % t "
    "interval of the mean difference. ICC(2,1): two-way random effects, absolute agreement, "
    "single rater; ICC(3,1): two-way mixed effects, consistency, single rater (Shrout & Fleiss "
    f"1979, McGraw & Wong 1996), with 95 % confidence intervals. At least {MIN_CASES} "
    "complete pairs per measure."
)


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


def format_p(p: float) -> str:
    """A p-value for display: ``n/a`` when undefined, ``< 2.2e-308`` at the floor."""
    if not math.isfinite(p):
        return "n/a"
    return f"< {P_FLOOR:.2g}" if p <= P_FLOOR else f"{p:.2g}"


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
    matched, age, sex = matched_covariates(measures, covariates)
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
        ax.set_title(f"{col}\nρ(age|sex) {rho_text}, p {format_p(p)}", fontsize=8)
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
    a_by, b_by = by_case(rows_a, "a"), by_case(rows_b, "b")
    common = [c for c in a_by if c in b_by]
    ra, rb = [a_by[c] for c in common], [b_by[c] for c in common]
    fig, axes = _grid(len(columns))
    for ax, col in zip(axes, columns, strict=True):
        a, b = pairs(numeric_column(ra, col, "a"), numeric_column(rb, col, "b"))
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


def _display(rows: Sequence[Row]) -> list[dict]:
    """Rows for Markdown: a p-value at the floor is shown as ``< 2.2e-308``, never as 0."""
    return [{k: (format_p(v) if k.startswith("p_") and isinstance(v, float)
                 and 0 <= v <= P_FLOOR else v) for k, v in r.items()} for r in rows]


def markdown_report(title: str, conventions: str, rows: Sequence[Row],
                    warnings: Sequence[str]) -> str:
    """The Markdown file: title, conventions, warnings (if any), then the table."""
    parts = [f"# {title}\n", f"{conventions}\n"]
    if warnings:
        parts.append("## Warnings\n\n" + "".join(f"- {w}\n" for w in warnings))
    parts.append(markdown_table(_display(rows)))
    return "\n".join(parts)


def _write_all(rows: list[dict], about: list[dict], conventions: str, title: str,
               out_dir: Path, stem: str, warnings: Sequence[str] = ()) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = _cells(rows)
    about = about + [{"item": "warning", "value": w} for w in warnings]
    md = out_dir / f"{stem}.md"
    write_text_atomic(md, markdown_report(title, conventions, rows, warnings))
    return {
        "csv": write_csv(cells, out_dir / f"{stem}.csv"),
        "xlsx": write_xlsx({stem: cells, "about": about}, out_dir / f"{stem}.xlsx"),
        "md": md,
    }


def run_stats(measurements_path: str | os.PathLike[str], covariates_path: str | os.PathLike[str],
              out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Cohort statistics of a measurements table against age and sex.

    Writes cohort_stats.csv, .xlsx (with an "about" sheet), .md and cohort_stats.png (every
    measure against age) in ``out_dir``; returns their paths keyed csv, xlsx, md, png. The
    warnings of ``cohort_analysis`` (cases left out, too few cases) are in the .md and the
    "about" sheet.
    """
    mpath, cpath = Path(measurements_path), Path(covariates_path)
    measures, covariates = read_table(mpath), read_table(cpath)
    result = cohort_analysis(measures, covariates, sources=(str(mpath), str(cpath)))
    rows = result.rows
    if not rows:
        raise ValueError(f"{mpath}: no measure columns (<SP|DI|PS|MF|ES>_..._<mm2|pct>)")
    about = [{"item": "conventions", "value": COHORT_CONVENTIONS},
             {"item": "measurements", "value": str(mpath)},
             {"item": "covariates", "value": str(cpath)},
             {"item": "software", "value": f"napari-paraspinal {__version__}"}]
    out = Path(out_dir)
    paths = _write_all(rows, about, COHORT_CONVENTIONS, "Cohort statistics", out,
                       "cohort_stats", result.warnings)
    paths["png"] = plot_against_age(measures, covariates, [r["measure"] for r in rows],
                                    out / "cohort_stats.png", stats=rows)
    return paths


def run_agreement(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str],
                  out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Agreement of two measurement tables of the same cases (differences are b - a).

    Writes agreement.csv, .xlsx (with an "about" sheet), .md and agreement.png (Bland-Altman
    panels) in ``out_dir``; returns their paths keyed csv, xlsx, md, png. The warnings of
    ``agreement_analysis`` (cases in one table only, few pairs) are in the .md and "about".
    """
    pa, pb = Path(path_a), Path(path_b)
    rows_a, rows_b = read_table(pa), read_table(pb)
    result = agreement_analysis(rows_a, rows_b, sources=(str(pa), str(pb)))
    rows = result.rows
    about = [{"item": "conventions", "value": AGREEMENT_CONVENTIONS},
             {"item": "a", "value": str(pa)},
             {"item": "b", "value": str(pb)},
             {"item": "software", "value": f"napari-paraspinal {__version__}"}]
    out = Path(out_dir)
    paths = _write_all(rows, about, AGREEMENT_CONVENTIONS, "Agreement", out, "agreement",
                       result.warnings)
    paths["png"] = plot_bland_altman(rows_a, rows_b, [r["measure"] for r in rows],
                                     out / "agreement.png")
    return paths
