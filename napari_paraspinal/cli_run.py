"""``paraspinal run``: the main job from the command line, and the top-level error handling
of every command (a clear message and exit status instead of a traceback)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .cluster import LOCAL
from .core.listing import path_problem
from .fat_options import DEFAULT_METHOD, METHODS
from .level_args import LevelAnchor, parse_anchor, parse_levels
from .sides import CHOICES as SIDES
from .sides import DEFAULT as SIDES_DEFAULT

#: Exit status when some cases failed (the others are in the tables), and for usage errors.
EXIT_CASES_FAILED = 1
EXIT_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command whose reader went away


def cmd_run(args: argparse.Namespace) -> int:
    """Run the batch; one line per case, a summary line, exit 1 when any case failed."""
    from .case_input import pair_inputs
    from .cli_progress import progress_reporter, say
    from .fat import FatConfig
    from .pipeline import RunConfig, model_available
    from .preprocess.n4 import N4Config
    from .run_batch import run
    from .run_output import MANIFEST

    slices = args.slices if args.slices is not None else (
        None if args.slice is None else [args.slice])
    config = RunConfig(out_dir=Path(args.out), slices=slices, spacing=args.spacing,
                       overlays=not args.no_overlays,
                       labels_dir=Path(args.labels) if args.labels else None,
                       fat=FatConfig(method=args.fat_method, fat_is_bright={
                           "auto": None, "bright": True, "dark": False}[args.fat_contrast]),
                       n4=None if args.no_n4 else N4Config(),
                       model=Path(args.model) if args.model else None, level=args.level,
                       device=args.device, identifiers=args.identifiers,
                       levels=args.levels, level_anchors=tuple(args.level_anchor),
                       sides=args.sides, mirror=not args.no_mirror,
                       precision=args.precision, bids=args.bids,
                       dixon_pairing=not args.no_dixon_pairing, cluster=args.cluster,
                       workers=args.workers, resume=args.resume)
    if args.workers is not None and args.cluster != LOCAL:
        print("error: --workers sets the size of a --cluster local run", file=sys.stderr)
        return EXIT_ERROR
    if bool(args.water) != bool(args.fat):
        given, missing = ("--water", "--fat") if args.water else ("--fat", "--water")
        print(f"error: {given} needs {missing} (a Dixon pair: water and fat images)",
              file=sys.stderr)
        return EXIT_ERROR
    if not args.inputs and not args.water:
        print("error: give images to run on, or --water and --fat", file=sys.stderr)
        return EXIT_ERROR
    inputs: list = list(args.inputs)
    if args.water:
        inputs = pair_inputs(args.water, args.fat) + inputs

    with progress_reporter("slice") as progress:
        results = run(inputs, config, progress=None if args.quiet else progress,
                      notice=say)
    failed = [r for r in results if r.status != "ok"]
    cases = {r.case.casefold() for r in results}
    for a in config.level_anchors:
        if a.case is not None and a.case.casefold() not in cases:
            print(f"warning: --level-anchor names case {a.case!r}, which is not in this run "
                  f"(cases: {', '.join(sorted(r.case for r in results))})", file=sys.stderr)
    for r in results:
        print(f"{r.case}: {r.status}  {_case_line(r)}")
    print(_summary(results, failed) + f"; tables in {config.out_dir / 'measurements.xlsx'} "
          f"and .csv, run record {config.out_dir / MANIFEST}"
          + (f"; BIDS derivatives in {config.out_dir}" if config.bids else ""))
    if config.labels_dir is None and not model_available(config):
        print("note: no segmentation model is installed; run read, checked and reported the "
              "inputs (give --model BUNDLE, or --labels to measure existing label maps).")
    flagged = [_flagged(r) for r in results if any(x.get("registration_flagged")
                                                   for x in r.rows)]
    if flagged:
        print(f"check these (the quality check flagged them; reasons in the table): "
              f"{'; '.join(flagged)}")
    return EXIT_CASES_FAILED if failed else 0


def _summary(results: list, failed: list) -> str:
    """``N of M cases done, K failed (ids)``, and unusable slices of the done cases."""
    text = f"{len(results) - len(failed)} of {len(results)} cases done"
    if failed:
        ids = ", ".join(r.case for r in failed[:5]) + (", ..." if len(failed) > 5 else "")
        text += f", {len(failed)} failed ({ids})"
    bad = sum(1 for r in results if r.status == "ok" for x in r.rows
              if x.get("status") == "failed")
    if bad:
        text += f"; {bad} slice(s) of done cases could not be used"
    return text


def _flagged(r) -> str:  # noqa: ANN001
    """A case, or its flagged slices, for the terminal."""
    if len(r.rows) == 1:
        return r.case
    ks = [str(x["slice"]) for x in r.rows if x.get("registration_flagged")]
    return f"{r.case} slices {','.join(ks)} ({len(ks)} of {len(r.rows)})"


def _case_line(r) -> str:  # noqa: ANN001
    """One line about a case for the terminal."""
    if r.status != "ok":
        return r.message
    row = r.row
    if len(r.rows) == 1 and row.get("status") == "failed":
        return str(row.get("notes") or "the slice could not be used")
    line = (f"{row['rows']}×{row['cols']} px, {row['spacing_col_mm']:g}×"
            f"{row['spacing_row_mm']:g} mm, orientation {row['orientation']}")
    if len(r.rows) > 1:
        bad = sum(1 for x in r.rows if x.get("status") == "failed")
        line += f", {len(r.rows)} slices" + (f" ({bad} could not be used)" if bad else "")
        seconds = sum(x.get("seconds", 0.0) for x in r.rows)
        if seconds:
            line += f", {seconds:.1f} s"
    elif "level" in row:
        line += f", level {row['level']}, {row['seconds']:.1f} s"
        if row.get("registration_flagged"):
            line += "  CHECK"
    if row.get("notes") and len(r.rows) == 1:
        line += f"  ({row['notes']})"
    return line


class _Stderr(logging.Handler):
    """Log records as plain lines on the current ``sys.stderr``."""

    def emit(self, record: logging.LogRecord) -> None:
        from .cli_progress import say

        say(self.format(record), sys.stderr)  # above a progress bar, not through it


def notices_to_stderr() -> None:
    """Show the input listing's notes (what it skipped and why) on stderr, whatever logging
    is set up elsewhere: no command skips an input silently."""
    logger = logging.getLogger("napari_paraspinal.inputs")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.propagate = False


def exit_on_error(err: BaseException) -> int:
    """The exit status for an error that reached the top of a command, after a one-line
    message on stderr (none for a closed pipe: the reader has gone)."""
    if isinstance(err, BrokenPipeError):
        try:  # Python would complain again when it flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE
    if isinstance(err, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{path_problem(err)}", file=sys.stderr)
    else:
        print(f"error: {err}", file=sys.stderr)
    return EXIT_ERROR


def _levels(text: str) -> list[str]:
    try:
        return parse_levels(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _anchor(text: str) -> LevelAnchor:
    try:
        return parse_anchor(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def add_run_parser(sub: argparse._SubParsersAction, spacing: Callable[[str], object],
                   slice_list: Callable[[str], object]) -> None:
    """The ``run`` command's options (``spacing``/``slice_list``: the CLI's argument types)."""
    p = sub.add_parser("run", help="the main job: images in; labels, overlays and a "
                                   "measurements spreadsheet out")
    p.add_argument("inputs", nargs="*", help="image files or folders (DICOM series, NIfTI, "
                                             "NRRD, MHA, PNG/TIFF with --spacing)")
    p.add_argument("--out", required=True, help="output folder (a rerun moves the previous "
                                                "run's files to OUT/superseded/)")
    p.add_argument("--slices", type=slice_list, default=None,
                   help="slices of 3-D inputs, 0-based, e.g. 3,5-7 (default: every slice)")
    p.add_argument("--slice", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--water", nargs="+", default=None,
                   help="Dixon water images (files or folders); pairs with --fat by name")
    p.add_argument("--fat", nargs="+", default=None,
                   help="Dixon fat images, same grids as --water: segmented on water + fat, "
                        "with the Dixon fat fraction per muscle")
    p.add_argument("--no-dixon-pairing", action="store_true",
                   help="run Dixon water, fat, in-phase and opposed-phase DICOM series as "
                        "plain cases (default: found by image type and paired)")
    p.add_argument("--spacing", type=spacing, default=None,
                   help="pixel spacing in mm for files without one (PNG/TIFF/JPEG)")
    p.add_argument("--labels", default=None,
                   help="folder of existing label maps with the inputs' file names (e.g. "
                        "manual segmentations): measured instead of segmented")
    p.add_argument("--fat-method", choices=METHODS, default=DEFAULT_METHOD,
                   help="fat/muscle separation inside MF and ES (default: calibrated, closest "
                        "to the Dixon fat fraction on real scans; kmeans is the paper's)")
    p.add_argument("--fat-contrast", choices=["auto", "bright", "dark"], default="auto",
                   help="is fat bright (T2w, T1w, Dixon fat, in-phase) or dark (Dixon water, "
                        "fat-suppressed)? default: told from each slice; fat columns stay "
                        "empty and flagged where it cannot be told")
    p.add_argument("--no-n4", action="store_true",
                   help="measure fat on the raw intensities (no N4 bias correction)")
    p.add_argument("--model", default=None,
                   help="model bundle folder (default: the shipped model)")
    p.add_argument("--level", choices=["auto", "L4-L5", "L5-S1"], default="auto",
                   help="spinal level of the slices (default: detected per slice)")
    p.add_argument("--levels", type=_levels, default=None,
                   help="keep only the mid-disc slice of each of these disc levels, e.g. "
                        "L4-L5,L5-S1 (levels counted up from the sacrum; cases where they "
                        "cannot be counted keep none and say so)")
    p.add_argument("--level-anchor", type=_anchor, action="append", default=[],
                   metavar="[CASE:]SLICE=LEVEL",
                   help="the level of one slice of a stack, e.g. 14=L4-L5 or 20=L4 (0-based "
                        "slice), to count the other levels from where the stack does not "
                        "reach the sacrum; CASE: for one case of several (repeatable)")
    p.add_argument("--sides", choices=SIDES, default=SIDES_DEFAULT,
                   help="left and right from the spine's midline (default) or as the network "
                        "labels them")
    p.add_argument("--no-mirror", action="store_true",
                   help="the network once per slice, not averaged with the mirrored slice")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32",
                   help="the network's arithmetic: bfloat16 is about twice as fast on "
                        "processors with bfloat16 instructions (AVX512-BF16, AMX) and gives "
                        "slightly machine-dependent results (default: float32)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    p.add_argument("--bids", action="store_true",
                   help="also make OUT a BIDS derivatives dataset: sub-*/[ses-*/]anat/"
                        "*_dseg.nii.gz label maps, *_morph.tsv measurements with JSON "
                        "sidecars, dseg.tsv and "
                        "dataset_description.json (subject and session from BIDS input names)")
    p.add_argument("--identifiers", action="store_true",
                   help="also write DICOM patient id, name and study date on the provenance "
                        "sheet (default: none; case ids come from file names)")
    p.add_argument("--cluster", default=None, metavar="local|ADDRESS",
                   help="run the cases as tasks on Dask distributed: 'local' starts worker "
                        "processes on this machine, an address (tcp://host:8786) uses that "
                        "scheduler's workers, which must see the inputs and OUT at the same "
                        "paths (same measurements as a plain run)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes of --cluster local (default: one per core)")
    p.add_argument("--resume", action="store_true",
                   help="keep the cases a previous run into OUT finished (same inputs, "
                        "unchanged files, same settings and model) and run only the rest; "
                        "without it a rerun supersedes everything in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_run)

