"""``paraspinal bench``: accuracy and speed measured on phantoms and on the real cases
(benchmarks print numbers; tests never time anything)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .sides import CHOICES as SIDES
from .sides import DEFAULT as SIDES_DEFAULT


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def cmd_bench(args: argparse.Namespace) -> int:  # noqa: C901 - one branch per target
    from .cli_progress import progress_reporter
    from .export import markdown_table as format_table

    if args.target == "network":  # needs torch only: runs where no image library is installed
        from .nets.speed import load_network, network_throughput

        if args.model is None:
            from .segment import default_model_path

            args.model = default_model_path()
        net = load_network(args.model)
        batches = [1, 8, 32] if args.n is None else [args.n]
        print(f"network throughput in atlas space (256x256), {torch_threads()} torch threads:")
        print(format_table(network_throughput(net, args.device, batches)))
        return 0
    if args.target == "stack":
        from .bench_stack import bench_stack
        from .realdata import default_real_data_dir

        if not (default_real_data_dir() / "lpm_tum01").is_dir():
            print(f"the real Dixon case is not in {default_real_data_dir()}", file=sys.stderr)
            return 2
        print(f"paraspinal run on the 29-slice 400x400 real Dixon stack, fresh process each, "
              f"{torch_threads()} torch threads:")
        print(format_table(bench_stack(overlays=not args.no_overlays)))
        return 0
    if args.target == "gui":
        return _bench_gui(args)
    if args.target == "levels":
        from .bench_levels import bench_levels, summary

        n = args.n or 10
        print(f"levels counted from the model's discs on {n} synthetic stacks (half reaching "
              "the sacrum), against the same counting on their true discs:")
        rows = bench_levels(n, None if args.model is None else str(args.model))
        print(format_table(rows))
        print(format_table(summary(rows)))
        return 0
    if args.target == "cluster":
        from .bench_cluster import bench_cluster

        n = args.n or 16
        print(f"paraspinal run on {n} phantom slices (one case each), fresh process each, "
              f"plain and on a local Dask cluster:")
        print(format_table(bench_cluster(n)))
        return 0
    if args.target == "fat" and args.real:
        from .bench_fat_real import bench_fat_real, write_fat_real_report

        rows = bench_fat_real()
        header = ("Fat % on the in-phase image (water + fat) of the real Dixon case, true MF/ES "
                  "labels, against the Dixon fat fraction F/(W+F): per muscle and slice")
        print(header)
        print(format_table(rows))
        if args.out is not None:
            paths = write_fat_real_report(rows, args.out, header)
            print(f"wrote {paths[0]} and {paths[1]}")
        return 0
    if args.target == "real":
        from .bench_real import bench_real, slice_indices, write_real_report
        from .real_training import pick_series
        from .realdata import default_real_data_dir, real_series

        root = default_real_data_dir()
        if not real_series(root):
            print(f"no labelled real cases found in {root} (set PARASPINAL_REAL_DATA to the "
                  "folder holding lpm_tum01/ and musclemap_sub0001/)", file=sys.stderr)
            return 2
        try:
            slice_indices(args.slices, 1)
            chosen = (pick_series([n.strip() for n in args.series.split(",") if n.strip()],
                                  root) if args.series else None)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        with progress_reporter("slice") as progress:
            rows = bench_real(args.model, root, slices=args.slices, device=args.device,
                              progress=progress, sides=args.sides, mirror=not args.no_mirror,
                              unseen=args.unseen or (), series=chosen)
        scored_by = "" if not args.unseen else (
            f"; a case it was trained on is scored by the first of {', '.join(args.unseen)} "
            "that was not (column model)")
        header = (f"Dice on the real cases in {root} (slices: {args.slices}), model "
                  f"{args.model or 'shipped'}{scored_by} (sides: {args.sides}, mirrored averaging: "
                  f"{'no' if args.no_mirror else 'yes'}): pooled over slices per structure, "
                  "empty where not annotated")
        print(header)
        print(format_table(rows))
        if args.out is not None:
            paths = write_real_report(rows, args.out, header)
            print(f"wrote {paths[0]} and {paths[1]}")
        if args.finetune:
            from .bench_crossperson import (
                crossperson_rows,
                run_both_ways,
                write_crossperson_report,
            )
            from .project.finetune_config import FinetuneConfig

            try:
                with progress_reporter("step") as progress:
                    results, floors = run_both_ways(
                        real_series(root), args.model, FinetuneConfig(device=args.device),
                        test_slices=args.slices, progress=progress)
            except ValueError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            header = ("Cross-person fine-tuning: 10 corrected slices (MF, ES) of one person, "
                      "test Dice (pooled, shared structures) before -> after fine-tuning (the "
                      "candidate, active only if promoted); floor_mean: copied labels, no model")
            print(header)
            print(format_table(crossperson_rows(results, floors, arrows=True)))
            if args.out is not None:
                paths = write_crossperson_report(results, floors, args.out, header)
                print(f"wrote {paths[0]} and {paths[1]}")
        return 0
    from .bench import (
        bench_crf,
        bench_fat,
        bench_preprocess,
        bench_registration,
        bench_segment,
        peak_rss_mb,
        summarise_registration,
    )

    if args.target == "fat":
        n = args.n or 100
        rows = bench_fat(n=n, bias=not args.no_bias, n4=not args.no_n4)
        field = "no bias field" if args.no_bias else (
            "bias field left uncorrected" if args.no_n4 else "bias field corrected by N4")
        print(f"fat % against phantom truth, {n} phantoms ({field}):")
        print(format_table(rows))
    elif args.target == "preprocess":
        print("median time per slice and step (ms), phantoms, this process:")
        rows = bench_preprocess(repeats=args.n or 5)
        rows += bench_preprocess(repeats=args.n or 5, level="auto")
        print(format_table(rows))
    elif args.target == "segment":
        print("median time per slice and stage (ms), file on disk to native labels, warm "
              f"process, {torch_threads()} torch threads:")
        print(format_table(bench_segment(repeats=args.n or 5)))
    elif args.target == "finetune":
        from .project.finetune_bench import bench_finetune

        with progress_reporter("step") as progress:
            bench = bench_finetune(n_train=args.n or 10, progress=progress)
        print(format_table(bench.rows))
        print(format_table([bench.summary]))
    elif args.target == "crf":
        print("CRF alone, median time per 256² atlas-space slice, ours against pydensecrf2 "
              f"(same unary and kernels), {torch_threads()} torch threads:")
        print(format_table(bench_crf(repeats=args.n or 5)))
    elif args.target == "register":
        rows = bench_registration(n=args.n or 40)
        print(format_table(rows))
        print(format_table([summarise_registration(rows)]))
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    return 0


def _bench_gui(args: argparse.Namespace) -> int:
    """``bench gui``: under a display; without one, again under ``xvfb-run`` when there."""
    import json
    import os
    import shutil

    if not os.environ.get("DISPLAY"):
        xvfb = shutil.which("xvfb-run")
        if xvfb is None:
            print("bench gui needs a display: run it under xvfb-run -a", file=sys.stderr)
            return 2
        os.execv(xvfb, [xvfb, "-a", sys.executable, "-m", "napari_paraspinal", *sys.argv[1:]])
    from ._napari.bench_gui import bench_gui, format_report

    report = bench_gui(n_slices=args.n, finetune=not args.no_finetune, phantom=args.phantom)
    print(format_report(report))
    if args.out is not None:
        path = args.out if args.out.suffix == ".json" else args.out / "bench_gui.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))
        print(f"wrote {path}")
    return 0


def add_bench_parser(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    """The ``bench`` subcommand and its options."""
    p = sub.add_parser("bench", help="measure accuracy and speed (benchmarks, not tests)")
    p.add_argument("target", choices=["fat", "preprocess", "register", "segment", "network",
                                          "crf", "finetune", "real", "stack", "cluster", "gui",
                                          "levels"])
    p.add_argument("--n", type=int, default=None,
                   help="number of phantoms (fat: 100, register: 40, cluster: 16) or repeats "
                        "per size (preprocess: 5), batch size (network: 1, 8 and 32), slices "
                        "of the stack (gui: 29), synthetic stacks (levels: 10)")
    p.add_argument("--model", default=None,
                   help="model bundle (network, real, levels; default: shipped)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the network runs (network, real)")
    p.add_argument("--no-bias", action="store_true", help="phantoms without a bias field")
    p.add_argument("--no-n4", action="store_true", help="skip N4 bias correction")
    p.add_argument("--real", action="store_true",
                   help="fat: every method against the Dixon fat fraction of the real Dixon "
                        "case (true labels) instead of phantoms")
    p.add_argument("--phantom", action="store_true",
                   help="gui: a phantom stack even where the real Dixon case is present")
    p.add_argument("--no-finetune", action="store_true", help="gui: skip the fine-tune phase")
    p.add_argument("--no-overlays", action="store_true", help="stack: skip the overlay PNGs")
    p.add_argument("--slices", default="all",
                   help="real: 'all' or 'everyK' (every K-th slice, a quick look)")
    p.add_argument("--out", type=Path, default=None,
                   help="real: folder for bench_real.csv/.md (and bench_real_finetune.csv/.md); "
                        "gui: a .json file, or a folder for bench_gui.json")
    p.add_argument("--sides", choices=SIDES, default=SIDES_DEFAULT,
                   help="real: left/right from the spine's midline or the network's own")
    p.add_argument("--no-mirror", action="store_true",
                   help="real: no averaging with the mirrored slice")
    p.add_argument("--series", default=None, metavar="NAMES",
                   help="real: only these cases or series, e.g. lpm_tum01/water or "
                        "musclemap_sub0001 (comma-separated; default: all)")
    p.add_argument("--unseen", action="append", default=None, metavar="MODEL",
                   help="real: a bundle not trained on some real case (repeatable); a case "
                        "the model was trained on is scored by the first such bundle")
    p.add_argument("--finetune", action="store_true",
                   help="real: also fine-tune on 10 slices of one person, test on the other "
                        "(both ways; minutes on CPU)")
    p.set_defaults(func=cmd_bench)

