"""``paraspinal phantom``, ``atlas build``, ``preprocess``, ``segment`` and ``info``: the
pipeline's single steps on image files, one command each."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from .core.errors import InputError


def cmd_phantom(args: argparse.Namespace) -> int:
    from .phantom import PhantomConfig, write_dataset

    config = PhantomConfig(contrast=args.contrast)
    paths = write_dataset(args.out_dir, n=args.n, seed=args.seed, level=args.level,
                          contrast=args.contrast, config=config)
    print(f"wrote {len(paths)} phantom cases to {args.out_dir} "
          f"(images/, labels/, fat/, truth/, overlays/)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .core.io import expand_inputs, list_slices, read_slice, validate_slice
    from .core.orientation import axis_codes

    status = 0
    for ref in expand_inputs(args.inputs):
        try:
            slices = list_slices(ref)
            image = read_slice(ref, index=args.slice, spacing=args.spacing)
            validate_slice(image)
        except InputError as err:
            print(f"{ref}: ERROR {err.problem}")
            status = 1
            continue
        g = image.geometry
        print(f"{ref}")
        print(f"  slices: {len(slices)}; shape {g.shape[0]}×{g.shape[1]}; spacing "
              f"{g.spacing[0]:g}×{g.spacing[1]:g} mm (thickness {g.spacing[2]:g} mm)")
        print(f"  origin {tuple(round(v, 3) for v in g.origin)}; orientation {axis_codes(g)}")
        for note in image.notes:
            print(f"  note: {note}")
    return status


def cmd_atlas(args: argparse.Namespace) -> int:
    from .cli_progress import progress_reporter
    from .preprocess.atlas_build import build_atlas
    from .preprocess.chain import atlas_cases_from_folder

    groups = atlas_cases_from_folder(args.data, level=args.level)
    for level, cases in sorted(groups.items()):
        with nullcontext() if args.quiet else progress_reporter("registration") as progress:
            atlas = build_atlas(cases, level, rounds=args.rounds, progress=progress)
        out = atlas.save(Path(args.out) / level)
        print(f"{level}: atlas of {len(cases)} cases written to {out}")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from .core.io import expand_inputs, image_stem, read_slice
    from .preprocess.atlas import load_atlases
    from .preprocess.chain import default_atlases, preprocess_slice, write_preprocessed

    atlases = load_atlases(args.atlas) if args.atlas else default_atlases()
    failed = flagged = total = 0
    for ref in expand_inputs(args.inputs):
        total += 1
        try:
            image = read_slice(ref, index=args.slice, spacing=args.spacing)
            pre = preprocess_slice(image, atlases, level=args.level)
        except InputError as err:
            failed += 1
            print(f"{ref.path}: ERROR {err.problem}")
            continue
        stem = image_stem(ref.path)
        write_preprocessed(pre, atlases[pre.level], args.out, stem)
        r = pre.registration
        flagged += r.flagged
        scores = ", ".join(f"{k} {v:.2f}" for k, v in pre.level_scores.items())
        print(f"{stem}: level {pre.level}" + (f" (correlation {scores})" if scores else "")
              + f", body Dice {r.body_dice:.2f}, {pre.seconds['total']:.2f} s"
              + (f"  CHECK: {'; '.join(r.reasons)}" if r.flagged else ""))
    print(f"{total - failed} of {total} slices preprocessed into {args.out}; "
          f"{flagged} flagged for a check (see *_qc.png)")
    return 1 if failed == total else 0


def cmd_segment(args: argparse.Namespace) -> int:
    from .core.io import expand_inputs, image_stem, read_slice, validate_slice
    from .core.writers import write_image, write_labels
    from .overlay import save_overlay_png
    from .segment import load_model, segment_slice, uncertainty

    model = load_model(args.model, args.device)
    out = Path(args.out)
    failed = total = 0
    for ref in expand_inputs(args.inputs):
        total += 1
        try:
            image = read_slice(ref, index=args.slice, spacing=args.spacing)
            validate_slice(image)
            seg = segment_slice(image, model, args.level)
        except InputError as err:
            failed += 1
            print(f"{ref.path}: ERROR {err.problem}")
            continue
        stem = image_stem(ref.path)
        write_labels(seg.labels, image.geometry, out / f"{stem}_labels.nii.gz")
        save_overlay_png(image, seg.labels, out / f"{stem}_overlay.png")
        if args.uncertainty:
            write_image(image.with_data(uncertainty(seg.probabilities)),
                        out / f"{stem}_uncertainty.nii.gz")
        reg = seg.preprocessed.registration
        print(f"{stem}: level {reg.level}, {seg.seconds['total']:.2f} s"
              + (f"  CHECK: {'; '.join(reg.reasons)}" if reg.flagged else ""))
    print(f"{total - failed} of {total} slices segmented into {out} with {model.card.name}")
    return 1 if failed == total else 0


def add_step_parsers(sub: argparse._SubParsersAction,
                     spacing: Callable[[str], object]) -> None:
    """The ``phantom``, ``atlas``, ``preprocess`` and ``segment`` commands' options
    (``spacing``: the CLI's argument type)."""
    p = sub.add_parser("phantom", help="write synthetic lumbar slices with exact labels")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--n", type=int, default=8, help="number of cases")
    p.add_argument("--seed", type=int, default=0, help="seed of the first case")
    p.add_argument("--level", choices=["L4-L5", "L5-S1", "both"], default="both")
    p.add_argument("--contrast", choices=["T2w", "T1w", "dixon_fat", "dixon_water"],
                   default="T2w")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("atlas", help="build level atlases from labelled slices")
    atlas_sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = atlas_sub.add_parser("build", help="group-wise affine atlas per level: mean image and "
                                           "label probability maps, 256×256 at 1 mm")
    p.add_argument("data", type=Path, help="dataset folder with images/ and labels/ (and "
                                           "truth/ for phantoms)")
    p.add_argument("--out", required=True, type=Path, help="output folder (one sub-folder "
                                                             "per level)")
    p.add_argument("--level", choices=["L4-L5", "L5-S1"], default=None,
                   help="level of all cases (default: from truth/<case>.json)")
    p.add_argument("--rounds", type=int, default=3, help="registration rounds (default 3)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_atlas)

    p = sub.add_parser("preprocess", help="N4, normalise, register to the level atlas; write "
                                          "atlas-space image, bias field, transform, QC")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--level", choices=["auto", "L4-L5", "L5-S1"], default="auto",
                   help="spinal level (default: detected by registering to both atlases)")
    p.add_argument("--atlas", type=Path, default=None,
                   help="atlas folder (default: the shipped atlases)")
    p.add_argument("--slice", type=int, default=None)
    p.add_argument("--spacing", type=spacing, default=None)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("segment", help="segment slices with a model: labels on the native "
                                       "grid, overlay, optional uncertainty map")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--model", default=None, help="model bundle (default: the shipped model)")
    p.add_argument("--level", choices=["auto", "L4-L5", "L5-S1"], default="auto")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--uncertainty", action="store_true",
                   help="also write 1 - max class probability per pixel (NIfTI)")
    p.add_argument("--slice", type=int, default=None)
    p.add_argument("--spacing", type=spacing, default=None)
    p.set_defaults(func=cmd_segment)


def add_info_parser(sub: argparse._SubParsersAction, spacing: Callable[[str], object]) -> None:
    """The ``info`` command's options (``spacing``: the CLI's argument type)."""
    p = sub.add_parser("info", help="show the slices and geometry of inputs")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--slice", type=int, default=None)
    p.add_argument("--spacing", type=spacing, default=None)
    p.set_defaults(func=cmd_info)
