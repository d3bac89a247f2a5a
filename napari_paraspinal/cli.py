"""The ``paraspinal`` command line: a thin layer over the headless core."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .cli_bench import add_bench_parser
from .cli_run import add_run_parser, exit_on_error, notices_to_stderr
from .cluster import LOCAL
from .core.errors import InputError
from .core.labels import parse_labelled
from .fat_options import DEFAULT_METHOD, METHODS


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
    from .preprocess.atlas_build import build_atlas
    from .preprocess.chain import atlas_cases_from_folder

    groups = atlas_cases_from_folder(args.data, level=args.level)
    for level, cases in sorted(groups.items()):
        def progress(done: int, total: int, level: str = level) -> None:
            if not args.quiet and (done == total or done % 10 == 0):
                print(f"[{level}] registration {done}/{total}", file=sys.stderr)

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


def cmd_train(args: argparse.Namespace) -> int:
    from .models import MODELS_DIR
    from .nets.dataset import folder_samples, phantom_samples
    from .nets.fit import fit_bundle
    from .nets.samples import AtlasSamples
    from .preprocess.atlas import load_atlases

    if Path(args.out).exists():
        raise InputError(args.out, "a model bundle already exists here (versions are never "
                                   "overwritten; choose a new --out)")
    atlas_dir = Path(args.atlas) if args.atlas else MODELS_DIR / "atlases"
    atlases = load_atlases(atlas_dir)

    def prepared(what: str) -> None:
        if not args.quiet:
            print(f"preparing {what} in atlas space ...", file=sys.stderr)

    cached = args.cache and all((Path(args.cache) / f).is_file() for f in ("train.npz",
                                                                              "val.npz"))
    if cached:
        train_set = AtlasSamples.load(Path(args.cache) / "train.npz")
        val_set = AtlasSamples.load(Path(args.cache) / "val.npz")
        note = {"source": f"samples cached in {args.cache}"}
    elif args.data:
        prepared(f"{args.data}")
        annotated = [int(v) for v in args.annotated.split(",")] if args.annotated else None
        samples = folder_samples(args.data, atlases, annotated=annotated)
        rng = np.random.default_rng(args.seed)
        order = rng.permutation(len(samples))
        n_val = max(1, int(round(len(samples) * args.val_fraction)))
        train_set, val_set = samples.subset(order[n_val:]), samples.subset(order[:n_val])
        note = {"source": str(args.data)}
    else:
        prepared(f"{args.phantoms} + {args.val} phantoms")
        train_set = phantom_samples(args.phantoms, args.seed, atlases, workers=args.workers)
        val_set = phantom_samples(args.val, args.seed + 10_000, atlases, workers=args.workers)
        note = {"generator": f"phantom T2w, seeds {args.seed}..{args.seed + args.phantoms - 1}"
                             f" (train), {args.seed + 10_000}.. (val)"}
    if args.cache and not cached:
        train_set.save(Path(args.cache) / "train.npz")
        val_set.save(Path(args.cache) / "val.npz")

    def progress(entry: dict) -> None:
        if not args.quiet:
            print(f"{entry['phase']} epoch {entry['epoch']}: {_loss_text(entry['loss'])}, "
                  f"validation Dice {entry['val_dice']:.4f}, {entry['seconds']:.0f} s",
                  file=sys.stderr)

    segmenter, config = _training_configs(args)
    checkpoint = args.checkpoint or Path(f"{args.out}.training")
    if not args.quiet:
        print(f"checkpoints in {checkpoint} (after a kill, run the same command with --resume)",
              file=sys.stderr)
    try:
        path, result = fit_bundle(args.out, train_set, val_set, atlas_dir, args.name or
                                  Path(args.out).name, segmenter, config, data_note=note,
                                  progress=progress, checkpoint_dir=checkpoint,
                                  resume=args.resume)
    except FileExistsError as err:
        raise InputError(checkpoint, "holds the checkpoint of an earlier run: add --resume to "
                                     "continue it, or choose another --checkpoint") from err
    except ValueError as err:
        if not args.resume:
            raise
        raise InputError(checkpoint, str(err)) from err
    if os.environ.get("RANK", "0") == "0":  # under torchrun the first process wrote it
        print(f"model written to {path}: best validation Dice {result.best_val_dice:.4f} "
              f"(epoch {result.best_epoch + 1} of {len(result.history)})")
    return 0


def cmd_train_synth(args: argparse.Namespace) -> int:
    from .nets.synth_train import SynthTrainConfig, fit_synthetic_bundle
    from .synth.real_shapes import default_shapes_dir

    shapes = args.shapes or default_shapes_dir()
    if not shapes.is_dir():
        print(f"no real label maps in {shapes}: training on ellipse muscles only",
              file=sys.stderr)
        shapes = None
    real = [r for r in (args.real or "").split(",") if r]
    config = SynthTrainConfig(steps=args.steps, pool=args.pool, batch_size=args.batch_size,
                              seed=args.seed, device=args.device, lr=args.lr,
                              real_share=args.real_share if real else 0.0)
    checkpoint = args.checkpoint or Path(f"{args.out}.training")
    try:
        path = fit_synthetic_bundle(
            args.out, args.name or Path(args.out).name, config, args.width, shapes,
            checkpoint, args.resume, init=args.init, real=real,
            progress=lambda e: print(f"step {e['step']}: loss {e['loss']:.4f}, synthetic "
                                     f"validation Dice {e['val_dice']:.4f}, "
                                     f"{e['seconds']:.0f} s", file=sys.stderr))
    except FileExistsError as err:
        raise InputError(args.out, "a model bundle already exists here") from err
    except ValueError as err:
        raise InputError(checkpoint, str(err)) from err
    if os.environ.get("RANK", "0") == "0":  # under torchrun the first process wrote it
        print(f"model written to {path}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .nets.ablate import AblationConfig, run_ablation, write_report
    from .nets.samples import AtlasSamples

    cache = args.cache
    parts = {"train": (args.phantoms, args.seed), "val": (args.val, args.seed + 10_000),
             "test": (args.test, 880_000)}
    sets = {}
    for name, (n, seed) in parts.items():
        path = cache / f"{name}.npz" if cache else None
        if path is not None and path.is_file():
            sets[name] = AtlasSamples.load(path)
            continue
        from .models import MODELS_DIR
        from .nets.dataset import phantom_samples
        from .preprocess.atlas import load_atlases

        if not args.quiet:
            print(f"preparing {n} {name} phantoms in atlas space ...", file=sys.stderr)
        atlases = load_atlases(args.atlas or MODELS_DIR / "atlases")
        sets[name] = phantom_samples(n, seed, atlases, workers=args.workers)
        if path is not None:
            sets[name].save(path)
    segmenter, train_config = _training_configs(args)

    def progress(variant: str, entry: dict) -> None:
        if not args.quiet:
            print(f"{variant}: {entry['phase']} epoch {entry['epoch']}: loss "
                  f"{entry['loss']:.4f}, validation Dice {entry['val_dice']:.4f}, "
                  f"{entry['seconds']:.0f} s", file=sys.stderr)

    result = run_ablation(sets["train"], sets["val"], sets["test"],
                          AblationConfig(segmenter=segmenter, train=train_config),
                          progress=progress)
    from .nets.segmenter import resolve_device

    device = resolve_device(train_config.device)
    note = (f"Ablation on phantoms: {len(sets['train'])} training, {len(sets['val'])} "
            f"validation, {len(sets['test'])} test slices; U-Net width {args.width}, "
            f"{args.norm} norm, batch {args.batch_size}, lr {args.lr}, up to {args.epochs} + "
            f"{args.joint_epochs} epochs, patience {args.patience}"
            f"{f', U-Net phase at most {args.max_minutes} min' if args.max_minutes else ''}, "
            f"device {device}. "
            f"Dice per test slice in atlas space, mean ± SD; paired t-tests.")
    paths = write_report(result, args.out, note)
    print(paths["report"].read_text())
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


def cmd_project(args: argparse.Namespace) -> int:
    from .project.store import Project

    if args.action == "init":
        with Project.init(args.project) as project:
            print(f"project created: {project.root}")
        return 0
    with Project.open(args.project) as project:
        if args.action == "add":
            slices = args.slices if args.slices is not None else (
                None if args.slice is None else [args.slice])
            result = project.add(args.inputs, slices=slices, spacing=args.spacing,
                                 level=args.level)
            for err in result.failed:
                print(f"skipped: {err}", file=sys.stderr)
            print(f"{len(result.added)} added, {len(result.existing)} already there, "
                  f"{len(result.failed)} failed")
            return 0 if not result.failed else 2
        if args.action == "status":
            counts = project.status_counts()
            print(", ".join(f"{k} {v}" for k, v in counts.items()))
            active = project.active_model()
            print(f"active model: {active.id if active else 'none (the shipped one is used)'}")
            return 0
        if args.action == "list":
            from .export import markdown_table

            rows = [{"case": c.id, "status": c.status, "level": c.level or "",
                     "verified": ",".join(map(str, c.verified_labels)),
                     "flagged": bool(c.qc_flags.get("registration_flagged")),
                     "source": c.source, "message": c.message}
                    for c in project.cases(args.status)]
            print(markdown_table(rows) if rows else "no cases")
            return 0
        if args.action == "segment":
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
        if args.action == "correct":
            from .core.io import read_labels
            from .project.vouch import absent_note

            case = project.case(args.case)
            labels = read_labels(args.labels, case.geometry)  # a convention note is logged
            version = project.save_labels(case.id, labels, args.kind, labelled=args.labelled)
            print(f"{case.id}: saved version {version.version} ({version.kind})")
            if note := absent_note(labels, version.labelled):
                print(f"note: {case.id}: {note}", file=sys.stderr)
            return 0
        if args.action == "check":
            from .project.checking import accept_sources, report_lines

            accepted = accept_sources(project) if args.accept_sources else []
            report = project.repair() if args.repair else project.check()
            report.repaired[:0] = accepted
            if (args.repair or args.accept_sources) and not report.repaired:
                report.repaired.append("nothing needed it")
            for line in report_lines(report):
                print(line)
            return 0 if report.ok else 1
        if args.action == "models":
            from .export import markdown_table

            rows = [{"model": m.id, "active": m.active, "parent": m.parent or "",
                     "created": m.created_at,
                     "held_out_dice": m.card.get("metrics", {}).get("held_out_dice", "")}
                    for m in project.models()]
            print(markdown_table(rows) if rows else "no models registered")
            return 0
        if args.action == "activate":
            project.activate(args.model)
            print(f"active model: {args.model}")
            return 0
    raise AssertionError(args.action)


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


def _loss_text(loss: float) -> str:
    """A training epoch's loss; epoch 0 of a phase only scores its start (loss NaN)."""
    return "start (no training yet)" if np.isnan(loss) else f"loss {loss:.4f}"


def cmd_finetune(args: argparse.Namespace) -> int:
    from .project.finetune import FinetuneConfig, finetune_project
    from .project.store import Project

    config = FinetuneConfig(epochs=args.epochs, joint_epochs=args.joint_epochs, lr=args.lr,
                            replay=args.replay, holdout_fraction=args.holdout,
                            min_improvement=args.min_improvement, device=args.device,
                            max_minutes=args.max_minutes)

    def progress(event: dict) -> None:
        if args.quiet:
            return
        stage = event.get("stage")
        if stage == "train":
            print(f"{event['phase']} epoch {event['epoch']}: {_loss_text(event['loss'])}, "
                  f"held-out Dice {event['val_dice']:.4f}", file=sys.stderr)
        elif "total" in event:
            print(f"{stage} {event['done']}/{event['total']} {event.get('case', '')}",
                  file=sys.stderr)
        else:
            print(f"{stage} {event.get('status', '')}", file=sys.stderr)

    with Project.open(args.project) as project:
        result = finetune_project(project, config, progress=progress, resume=args.resume)
    if result.status == "trained":  # a torchrun process other than the first: it reports
        return 0
    before = result.active.mean if result.active else float("nan")
    after = result.candidate.mean if result.candidate else float("nan")
    print(f"{result.status}: held-out Dice {before:.4f} (active {result.parent}) -> "
          f"{after:.4f} (candidate {result.model_id or 'not registered'}); {result.reason}")
    return 0 if result.status in ("promoted", "rejected") else 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paraspinal",
        description="Lumbar paraspinal muscle segmentation, fat separation and CSA export.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_run_parser(sub, _spacing, _slice_list)

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
    p.add_argument("--spacing", type=_spacing, default=None)
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
    p.add_argument("--spacing", type=_spacing, default=None)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("train", help="train a U-Net + CRF model bundle (phantoms or a "
                                     "labelled folder)")
    p.add_argument("--out", required=True, type=Path, help="new bundle folder (never "
                                                             "overwritten)")
    p.add_argument("--data", type=Path, default=None,
                   help="folder with images/ and labels/ (default: phantoms)")
    p.add_argument("--annotated", default=None,
                   help="label values drawn in --data, e.g. 5,6,7,8 (default: all)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--phantoms", type=int, default=240, help="training phantoms")
    p.add_argument("--val", type=int, default=40, help="validation phantoms")
    _training_options(p)
    p.add_argument("--seed", type=int, default=100_000,
                   help="first phantom seed (validation phantoms start 10000 later)")
    p.add_argument("--cache", type=Path, default=None,
                   help="atlas-space samples: read train.npz and val.npz here if present, "
                        "else make and save them")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint folder, rewritten every epoch (default: OUT.training)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is in the checkpoint folder")
    p.add_argument("--name", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-synth", help="train the shipped model's recipe: a U-Net on "
                                           "synthetic slices of random contrast (body frame)")
    p.add_argument("--out", required=True, type=Path, help="new bundle folder (never "
                                                             "overwritten)")
    p.add_argument("--steps", type=int, default=4500, help="training steps (batches)")
    p.add_argument("--pool", type=int, default=6000, help="painted cases drawn from")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from this bundle's weights (same network)")
    p.add_argument("--real", default=None, metavar="CASES",
                   help="labelled real cases or series of shared/data mixed into every batch "
                        "(e.g. lpm_tum01 or musclemap_sub0001/fat, comma-separated); the card "
                        "names them")
    p.add_argument("--real-share", type=float, default=0.25,
                   help="share of each batch taken from the real slices (with --real)")
    p.add_argument("--width", type=int, default=16, help="U-Net base width")
    p.add_argument("--shapes", type=Path, default=None,
                   help="real MF/ES label maps (default: shared/data/mri515_t2_labels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="checkpoint folder (default: OUT.training)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--name", default=None)
    p.set_defaults(func=cmd_train_synth)

    p = sub.add_parser("ablate", help="the paper's ablation: U-Net / +CRF / +CRF and "
                                      "multi-data on one phantom split, paired t-tests")
    p.add_argument("--out", required=True, type=Path, help="folder for the report and CSVs")
    p.add_argument("--phantoms", type=int, default=240, help="training phantoms")
    p.add_argument("--val", type=int, default=40, help="validation phantoms")
    p.add_argument("--test", type=int, default=50, help="test phantoms")
    _training_options(p)
    p.add_argument("--seed", type=int, default=100_000,
                   help="first phantom seed (validation +10000; test phantoms start at 880000)")
    p.add_argument("--cache", type=Path, default=None,
                   help="atlas-space samples: read train/val/test.npz here if present, else "
                        "make and save them")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_ablate)

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

    p = sub.add_parser("project", help="a project: cases, label versions, models (SQLite)")
    psub = p.add_subparsers(dest="action", required=True)
    q = psub.add_parser("init", help="create a project folder")
    q.add_argument("project", type=Path)
    q = psub.add_parser("add", help="add files or folders (DICOM series included) as cases")
    q.add_argument("project", type=Path)
    q.add_argument("inputs", nargs="+")
    q.add_argument("--slices", type=_slice_list, default=None,
                   help="slices of 3-D inputs, 0-based, e.g. 3,5-7 (default: every slice, "
                        "a case each)")
    q.add_argument("--slice", type=int, default=None, help=argparse.SUPPRESS)
    q.add_argument("--spacing", type=_spacing, default=None)
    q.add_argument("--level", choices=["L4-L5", "L5-S1"], default=None)
    q = psub.add_parser("status", help="how many cases are new, predicted, corrected, ...")
    q.add_argument("project", type=Path)
    q = psub.add_parser("list", help="the cases (the annotators' worklist)")
    q.add_argument("project", type=Path)
    q.add_argument("--status", default=None,
                   choices=["new", "predicted", "corrected", "verified", "failed"])
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

    p = sub.add_parser("finetune", help="train a candidate on a project's corrected cases; it "
                                        "becomes active only if it beats the active model")
    p.add_argument("project", type=Path)
    p.add_argument("--epochs", type=int, default=15, help="U-Net epochs (early stopping)")
    p.add_argument("--joint-epochs", type=int, default=1, help="U-Net + CRF epochs")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--replay", type=int, default=None,
                   help="replayed original training slices (default: twice the cases)")
    p.add_argument("--holdout", type=float, default=0.3,
                   help="share of the corrected cases held out for validation")
    p.add_argument("--min-improvement", type=float, default=0.0,
                   help="held-out Dice the candidate must gain to become active")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--resume", action="store_true",
                   help="continue the unfinished run of this project (after a kill or cancel)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("export", help="a project's measurements (latest label version of every "
                                      "case) as XLSX and CSV with provenance")
    p.add_argument("project", type=Path)
    p.add_argument("--out", type=Path, required=True, help="XLSX file (CSV written beside it)")
    p.add_argument("--fat-method", choices=METHODS, default=DEFAULT_METHOD)
    p.set_defaults(func=cmd_export)

    add_bench_parser(sub)

    p = sub.add_parser("info", help="show the slices and geometry of inputs")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--slice", type=int, default=None)
    p.add_argument("--spacing", type=_spacing, default=None)
    p.set_defaults(func=cmd_info)
    return parser


def _training_options(p: argparse.ArgumentParser) -> None:
    """Network and optimisation options shared by ``train`` and ``ablate``."""
    p.add_argument("--width", type=int, default=8, help="U-Net base width")
    p.add_argument("--norm", choices=["instance", "batch", "group", "none"], default="instance",
                   help="U-Net normalisation (batch norm's running statistics mix MRI and "
                        "gradient-magnitude samples)")
    p.add_argument("--epochs", type=int, default=25, help="U-Net epochs (early stopping)")
    p.add_argument("--joint-epochs", type=int, default=3, help="U-Net + CRF epochs")
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--max-minutes", type=float, default=None,
                   help="end the U-Net phase after the epoch that passes this many minutes")
    p.add_argument("--no-crf", action="store_true")
    p.add_argument("--no-multi-data", action="store_true",
                   help="no gradient-magnitude samples")
    p.add_argument("--train-seed", type=int, default=1, help="torch/numpy seed of training")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--atlas", type=Path, default=None)
    p.add_argument("--workers", type=int, default=1,
                   help="processes preparing phantom samples (registration is one thread each)")


def _training_configs(args: argparse.Namespace):
    """(SegmenterConfig, TrainConfig) from :func:`_training_options`."""
    from .nets.segmenter import SegmenterConfig
    from .nets.train import TrainConfig

    config = TrainConfig(epochs_pretrain=args.epochs, epochs_joint=args.joint_epochs,
                         batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                         seed=args.train_seed, multi_data=not args.no_multi_data,
                         device=args.device, max_minutes_pretrain=args.max_minutes)
    segmenter = SegmenterConfig(unet={"base_width": args.width, "norm": args.norm},
                                use_crf=not args.no_crf)
    return segmenter, config


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
