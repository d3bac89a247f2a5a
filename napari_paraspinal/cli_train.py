"""``paraspinal train``, ``train-synth``, ``ablate`` and ``finetune``: training model
bundles from phantoms, synthetic slices, labelled folders or a project's corrections."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .core.errors import InputError
from .jobs import Progress


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

    def progress(event: Progress) -> None:
        if not args.quiet:
            print(f"{event.text}, {(event.values or {}).get('seconds', 0):.0f} s",
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
                              real_share=args.real_share if real else 0.0,
                              real_remap=args.real_remap if real else 0.0)
    checkpoint = args.checkpoint or Path(f"{args.out}.training")
    try:
        path = fit_synthetic_bundle(
            args.out, args.name or Path(args.out).name, config, args.width, shapes,
            checkpoint, args.resume, init=args.init, real=real,
            progress=lambda e: print(e.text, file=sys.stderr))
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

    def progress(event: Progress) -> None:
        if not args.quiet:
            print(f"{event.case}: {event.text}, {(event.values or {}).get('seconds', 0):.0f} s",
                  file=sys.stderr)

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


def cmd_finetune(args: argparse.Namespace) -> int:
    from .nets.trainer import PHASES
    from .project.finetune import FinetuneConfig, finetune_project
    from .project.store import Project

    config = FinetuneConfig(epochs=args.epochs, joint_epochs=args.joint_epochs, lr=args.lr,
                            replay=args.replay, holdout_fraction=args.holdout,
                            min_improvement=args.min_improvement, device=args.device,
                            max_minutes=args.max_minutes)

    def progress(event: Progress) -> None:
        if args.quiet:
            return
        if event.stage in PHASES:  # an epoch: its validation is the held-out cases
            print(event.text.replace("validation Dice", "held-out Dice"), file=sys.stderr)
        elif event.stage == "done":
            print(f"done {event.message}", file=sys.stderr)
        else:
            print(f"{event.stage} {event.done}/{event.total} {event.case}", file=sys.stderr)

    with Project.open(args.project) as project:
        result = finetune_project(project, config, progress=progress, resume=args.resume)
    if result.status == "trained":  # a torchrun process other than the first: it reports
        return 0
    before = result.active.mean if result.active else float("nan")
    after = result.candidate.mean if result.candidate else float("nan")
    print(f"{result.status}: held-out Dice {before:.4f} (active {result.parent}) -> "
          f"{after:.4f} (candidate {result.model_id or 'not registered'}); {result.reason}")
    return 0 if result.status in ("promoted", "rejected") else 1


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


def add_training_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``train``, ``train-synth`` and ``ablate`` commands' options."""
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
    p.add_argument("--real-remap", type=float, default=0.0, metavar="P",
                   help="probability that a real slice gets a random intensity curve, so one "
                        "contrast also teaches others (with --real)")
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


def add_finetune_parser(sub: argparse._SubParsersAction) -> None:
    """The ``finetune`` command's options."""
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
