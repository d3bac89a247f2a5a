"""The ``paraspinal`` command line: a thin layer over the headless core. This module builds
the parser from the ``cli_*`` modules (a ``cmd_*`` function per subcommand) and runs it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__
from .cli_bench import add_bench_parser
from .cli_project import add_export_parser, add_project_parser
from .cli_run import add_run_parser, exit_on_error, notices_to_stderr
from .cli_stats import add_stats_parsers
from .cli_steps import add_info_parser, add_step_parsers
from .cli_train import add_finetune_parser, add_training_parsers
from .core.errors import InputError


def _spacing(text: str) -> tuple[float, float]:
    parts = [float(p) for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise argparse.ArgumentTypeError("spacing is one number or two: 0.8 or 0.8,0.9")
    return parts[0], parts[1]


def _slice_list(text: str) -> list[int]:
    from .core.slices import parse_slices

    try:
        return parse_slices(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paraspinal",
        description="Lumbar paraspinal muscle segmentation, fat separation and CSA export.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # in the order of the help's command list
    add_run_parser(sub, _spacing, _slice_list)
    add_step_parsers(sub, _spacing)  # phantom, atlas, preprocess, segment
    add_training_parsers(sub)  # train, train-synth, ablate
    add_stats_parsers(sub)  # evaluate, stats, agree
    add_project_parser(sub, _spacing, _slice_list)
    add_finetune_parser(sub)
    add_export_parser(sub)
    add_bench_parser(sub)
    add_info_parser(sub, _spacing)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``paraspinal`` console script: bad input, an unusable file or
    folder, Ctrl-C or a closed pipe end with a message and exit status, not a traceback."""
    args = build_parser().parse_args(argv)
    notices_to_stderr()
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return status
    except (InputError, OSError, KeyboardInterrupt) as err:
        return exit_on_error(err)


if __name__ == "__main__":
    raise SystemExit(main())
