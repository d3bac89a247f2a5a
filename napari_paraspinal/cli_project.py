"""``paraspinal project`` (one small function per action) and ``paraspinal export``: a
project's cases, label versions and models, and its measurements as a spreadsheet."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .cluster import LOCAL
from .core.errors import InputError
from .core.labels import parse_labelled
from .fat_options import DEFAULT_METHOD, METHODS

if TYPE_CHECKING:
    from .project.store import Project


def cmd_project(args: argparse.Namespace) -> int:
    from .project.store import Project

    if args.action == "init":
        with Project.init(args.project) as project:
            print(f"project created: {project.root}")
        return 0
    with Project.open(args.project) as project:
        return ACTIONS[args.action](project, args)


def _add(project: Project, args: argparse.Namespace) -> int:
    slices = args.slices if args.slices is not None else (
        None if args.slice is None else [args.slice])
    result = project.add(args.inputs, slices=slices, spacing=args.spacing,
                         level=args.level)
    for err in result.failed:
        print(f"skipped: {err}", file=sys.stderr)
    print(f"{len(result.added)} added, {len(result.existing)} already there, "
          f"{len(result.failed)} failed")
    return 0 if not result.failed else 2


def _status(project: Project, args: argparse.Namespace) -> int:
    counts = project.status_counts()
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    active = project.active_model()
    print(f"active model: {active.id if active else 'none (the shipped one is used)'}")
    return 0


def _list(project: Project, args: argparse.Namespace) -> int:
    from .export import markdown_table

    rows = [{"case": c.id, "status": c.status, "level": c.level or "",
             "verified": ",".join(map(str, c.verified_labels)),
             "flagged": bool(c.qc_flags.get("registration_flagged")),
             "uncertainty": "" if c.uncertainty is None else f"{c.uncertainty:.3f}",
             "source": c.source, "message": c.message}
            for c in project.cases(args.status)]
    print(markdown_table(rows) if rows else "no cases")
    return 0


def _next(project: Project, args: argparse.Namespace) -> int:
    case_id = project.next_case(args.after, args.by)
    if case_id is None:
        print("no case left to correct or verify", file=sys.stderr)
        return 1
    print(case_id)
    return 0


def _segment(project: Project, args: argparse.Namespace) -> int:
    from .cli_progress import progress_reporter
    from .project.batch import segment_project

    statuses = ["new", "failed"] + (["predicted"] if args.redo else [])

    if args.workers is not None and args.cluster != LOCAL:
        raise InputError(args.project, "--workers sets the size of a --cluster local "
                                       "run")
    client = None
    if args.cluster:
        from .cluster import open_client

        client = open_client(args.cluster, args.workers)
    try:
        with progress_reporter("case") as progress:
            result = segment_project(project, statuses, args.device, args.level,
                                     progress=progress, client=client)
    finally:
        if client is not None:
            from .cluster import close_client

            close_client(client)
    for cid, why in result.failed.items():
        print(f"failed: {cid}: {why}", file=sys.stderr)
    print(f"{len(result.segmented)} segmented, {len(result.failed)} failed, "
          f"{len(result.skipped)} left as they were")
    return 0


def _correct(project: Project, args: argparse.Namespace) -> int:
    from .core.io import read_labels
    from .project.vouch import absent_note

    case = project.case(args.case)
    labels = read_labels(args.labels, case.geometry)  # a convention note is logged
    version = project.save_labels(case.id, labels, args.kind, labelled=args.labelled)
    print(f"{case.id}: saved version {version.version} ({version.kind})")
    if note := absent_note(labels, version.labelled):
        print(f"note: {case.id}: {note}", file=sys.stderr)
    return 0


def _check(project: Project, args: argparse.Namespace) -> int:
    from .project.checking import accept_sources, report_lines

    accepted = accept_sources(project) if args.accept_sources else []
    report = project.repair() if args.repair else project.check()
    report.repaired[:0] = accepted
    if (args.repair or args.accept_sources) and not report.repaired:
        report.repaired.append("nothing needed it")
    for line in report_lines(report):
        print(line)
    return 0 if report.ok else 1


def _models(project: Project, args: argparse.Namespace) -> int:
    from .export import markdown_table

    rows = [{"model": m.id, "active": m.active, "parent": m.parent or "",
             "created": m.created_at,
             "held_out_dice": m.card.get("metrics", {}).get("held_out_dice", "")}
            for m in project.models()]
    print(markdown_table(rows) if rows else "no models registered")
    return 0


def _activate(project: Project, args: argparse.Namespace) -> int:
    project.activate(args.model)
    print(f"active model: {args.model}")
    return 0


#: The actions on an open project (``init`` creates one instead), in the parser's order.
ACTIONS: dict[str, Callable[[Project, argparse.Namespace], int]] = {
    "add": _add, "status": _status, "list": _list, "next": _next, "segment": _segment,
    "correct": _correct, "check": _check, "models": _models, "activate": _activate,
}


def cmd_export(args: argparse.Namespace) -> int:
    from .export import write_csv, write_xlsx
    from .fat import FatConfig
    from .project.batch import project_sheets
    from .project.store import Project

    with Project.open(args.project) as project:
        sheets = project_sheets(project, FatConfig(method=args.fat_method))
    if not sheets["measurements"]:
        raise InputError(args.project, "no case has labels yet (run `paraspinal project "
                                       "segment` first)")
    out = Path(args.out)
    xlsx = out if out.suffix.lower() == ".xlsx" else out.with_name(out.name + ".xlsx")
    write_xlsx(sheets, xlsx)
    write_csv(sheets["measurements"], xlsx.with_suffix(".csv"))
    print(f"{len(sheets['measurements'])} cases written to {xlsx} and "
          f"{xlsx.with_suffix('.csv')}")
    return 0


def add_project_parser(sub: argparse._SubParsersAction, spacing: Callable[[str], object],
                       slice_list: Callable[[str], object]) -> None:
    """The ``project`` command and its actions (``spacing``/``slice_list``: the CLI's argument
    types)."""
    p = sub.add_parser("project", help="a project: cases, label versions, models (SQLite)")
    psub = p.add_subparsers(dest="action", required=True)
    q = psub.add_parser("init", help="create a project folder")
    q.add_argument("project", type=Path)
    q = psub.add_parser("add", help="add files or folders (DICOM series included) as cases")
    q.add_argument("project", type=Path)
    q.add_argument("inputs", nargs="+")
    q.add_argument("--slices", type=slice_list, default=None,
                   help="slices of 3-D inputs, 0-based, e.g. 3,5-7 (default: every slice, "
                        "a case each)")
    q.add_argument("--slice", type=int, default=None, help=argparse.SUPPRESS)
    q.add_argument("--spacing", type=spacing, default=None)
    q.add_argument("--level", choices=["L4-L5", "L5-S1"], default=None)
    q = psub.add_parser("status", help="how many cases are new, predicted, corrected, ...")
    q.add_argument("project", type=Path)
    q = psub.add_parser("list", help="the cases (the annotators' worklist)")
    q.add_argument("project", type=Path)
    q.add_argument("--status", default=None,
                   choices=["new", "predicted", "corrected", "verified", "failed"])
    q = psub.add_parser("next", help="the next case to correct or verify (its id; exit 1 "
                                     "when none is left)")
    q.add_argument("project", type=Path)
    q.add_argument("--by", choices=["order", "uncertainty"], default="order",
                   help="worklist order, or the most uncertain segmentation first")
    q.add_argument("--after", default=None, metavar="CASE",
                   help="the case just done: the next one after it (order) or other than "
                        "it (uncertainty)")
    q = psub.add_parser("segment", help="segment new (and failed) cases with the active model")
    q.add_argument("project", type=Path)
    q.add_argument("--redo", action="store_true",
                   help="also re-segment predicted cases (never corrected or verified ones)")
    q.add_argument("--level", choices=["L4-L5", "L5-S1"], default=None)
    q.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    q.add_argument("--cluster", default=None, metavar="local|ADDRESS",
                   help="segment and measure the cases on Dask workers ('local': processes "
                        "on this machine; an address: that scheduler's workers); the project "
                        "is read and written here only")
    q.add_argument("--workers", type=int, default=None,
                   help="worker processes of --cluster local (default: one per core)")
    q = psub.add_parser("correct", help="save a corrected (or verified) label map of a case as "
                                        "its new version")
    q.add_argument("project", type=Path)
    q.add_argument("case")
    q.add_argument("labels", type=Path, help="label map on the case's grid (NIfTI, ...)")
    q.add_argument("--kind", choices=["corrected", "verified"], default="corrected")
    q.add_argument("--labelled", default=None, type=parse_labelled,
                   help="label values 1-8 the correction vouches for, comma-separated, e.g. "
                        "5,6,7,8 (default: all)")
    q = psub.add_parser("check", help="verify the database, every label file and every case's "
                                      "source; list what was checked and found")
    q.add_argument("project", type=Path)
    q.add_argument("--repair", action="store_true",
                   help="move orphan files aside, clear stale claims, recompute statuses, "
                        "fingerprint sources of cases added before fingerprints; says what "
                        "it did")
    q.add_argument("--accept-sources", action="store_true",
                   help="record the current fingerprint of changed sources (only once you "
                        "know the cases' labels still fit the images as they are now)")
    q = psub.add_parser("models", help="the model versions of the project")
    q.add_argument("project", type=Path)
    q = psub.add_parser("activate", help="make a registered model version the active one")
    q.add_argument("project", type=Path)
    q.add_argument("model")
    p.set_defaults(func=cmd_project)


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """The ``export`` command's options."""
    p = sub.add_parser("export", help="a project's measurements (latest label version of every "
                                      "case) as XLSX and CSV with provenance")
    p.add_argument("project", type=Path)
    p.add_argument("--out", type=Path, required=True, help="XLSX file (CSV written beside it)")
    p.add_argument("--fat-method", choices=METHODS, default=DEFAULT_METHOD)
    p.set_defaults(func=cmd_export)
