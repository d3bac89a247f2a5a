"""``paraspinal evaluate``, ``stats`` and ``agree``: a model's scores on a labelled folder
and statistics of measurement tables, printed as tables and written as files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_folder, summarise
    from .export import markdown_table, write_csv
    from .segment import load_model

    model = load_model(args.model, args.device)
    rows = evaluate_folder(args.data, model, args.level)
    table = summarise(rows)
    print(f"{model.card.name} on {args.data} (native grid, mm):")
    print(markdown_table(table))
    if args.out:
        write_csv(rows, Path(args.out) / "evaluation_cases.csv")
        write_csv(table, Path(args.out) / "evaluation_summary.csv")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from .stats import run_stats

    return _table_job(run_stats, args.measurements, args.covariates, args.out)


def cmd_agree(args: argparse.Namespace) -> int:
    from .stats import run_agreement

    return _table_job(run_agreement, args.a, args.b, args.out)


def _table_job(job, first: Path, second: Path, out: Path) -> int:  # noqa: ANN001
    """Run a stats job on two tables; print its Markdown table and what it wrote."""
    try:
        paths = job(first, second, out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)  # the message names its own file and line
        return 2
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_stats_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``evaluate``, ``stats`` and ``agree`` commands' options."""
    p = sub.add_parser("evaluate", help="Dice, recall, PPV, boundary distance and HD95 (mm) "
                                        "of a model on a labelled folder")
    p.add_argument("data", type=Path, help="folder with images/ and labels/")
    p.add_argument("--model", default=None)
    p.add_argument("--level", choices=["auto", "L4-L5", "L5-S1"], default="auto")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--out", type=Path, default=None, help="folder for the CSV tables")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("stats", help="cohort statistics: Spearman partial correlation of every "
                                     "measure with age and sex, BH-corrected, and a plot")
    p.add_argument("measurements", type=Path, help="measurements.xlsx or .csv")
    p.add_argument("--covariates", type=Path, required=True,
                   help="table with case, age and sex columns (CSV or XLSX)")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("agree", help="agreement of two measurement tables of the same cases: "
                                     "Bland-Altman and ICC, table and plot")
    p.add_argument("a", type=Path, help="first table (e.g. automatic)")
    p.add_argument("b", type=Path, help="second table (e.g. corrected); differences are b - a")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_agree)
