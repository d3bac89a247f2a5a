"""Train a segmenter on synthetic slices of random contrast (the shipped model's recipe).

Painted cases (:mod:`..synth.render`: tissue and label maps in the body frame) are drawn
once into a pool; every training step takes a batch from the pool, mirrors each case left
and right at random (swapping left and right labels), crops it and gives it a fresh random
appearance (:mod:`..synth.contrast`). So the network sees each anatomy in many contrasts and
never the same image twice. Adam with a cosine learning-rate decay over a fixed number of
steps; the final weights are kept (validation is reported, not used to pick, so no data
chooses the model that later scores it).

Real labelled slices (:mod:`..real_training`) can take a share of every batch: mirrored at
random like the synthetic ones, moved and re-lit (:mod:`.augment`), and scored only on the
structures they annotate.

Checkpoints (:mod:`.checkpoint`: safetensors and JSON) are written every ``checkpoint_every``
steps; ``resume`` continues a killed run from the last one.

Under ``torchrun --nproc_per_node N`` each process draws its own part of every batch (its own
random draws) and the gradients are summed (:mod:`.distributed`): the same batch size and
schedule, each process painting and training 1/N of it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.config import config_to_dict
from ..core.labels import NUM_CLASSES, swap_left_right
from ..jobs import ProgressFn, report
from ..synth.contrast import ContrastConfig, synthesize
from ..synth.render import RenderConfig, render_pool
from .augment import AugmentConfig, augment_slice
from .checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from .distributed import Group, data_parallel_step, group_from_env
from .losses import DiceCELoss
from .metrics import dice_per_label
from .samples import AtlasSamples
from .segmenter import Segmenter, SegmenterConfig, resolve_device


@dataclass(frozen=True)
class SynthTrainConfig:
    """How the synthetic training runs."""

    steps: int = 4500
    batch_size: int = 8
    crop: int = 192
    lr: float = 2e-3
    pool: int = 6000
    val: int = 48
    seed: int = 0
    workers: int = 2
    checkpoint_every: int = 250
    val_every: int = 500
    device: str = "auto"
    real_share: float = 0.0  # share of each batch taken from real slices, when given
    real_remap: float = 0.0  # probability of a random intensity curve on a real slice


def _crop_box(rng: np.random.Generator, size: int, crop: int) -> tuple[int, int]:
    """Top-left corner of a random crop (mostly keeping the back, where MF and ES are)."""
    spare = size - crop
    low = 0 if rng.random() < 0.25 else spare // 2
    return int(rng.integers(low, spare + 1)), int(rng.integers(0, spare + 1))


def make_batch(tissue: np.ndarray, labels: np.ndarray, index: np.ndarray, crop: int,
               rng: np.random.Generator, gen: torch.Generator,
               contrast: ContrastConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images B×1×crop×crop and labels B×crop×crop for pool cases ``index``."""
    images, targets = [], []
    size = tissue.shape[-1]
    for i in index:
        t, lab = tissue[i], labels[i]
        if rng.random() < 0.5:  # a mirrored left muscle is a right one
            t, lab = t[:, ::-1], swap_left_right(lab[:, ::-1])
        r0, c0 = _crop_box(rng, size, crop)
        t = torch.from_numpy(np.ascontiguousarray(t[r0:r0 + crop, c0:c0 + crop])).long()
        image, _ = synthesize(t, gen, contrast)
        images.append(image)
        targets.append(torch.from_numpy(np.ascontiguousarray(lab[r0:r0 + crop,
                                                                 c0:c0 + crop])).long())
    return torch.stack(images)[:, None], torch.stack(targets)


def real_batch(samples: AtlasSamples, index: np.ndarray, crop: int, rng: np.random.Generator,
               augment: AugmentConfig | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, labels and label masks (B×C) of real samples ``index``: mirrored at random,
    moved and re-lit (``augment``), cropped as the synthetic ones are."""
    swap = swap_left_right(np.arange(NUM_CLASSES, dtype=np.uint8)).astype(np.intp)
    images, targets, masks = [], [], []
    size = samples.images.shape[-1]
    for i in index:
        image, lab, mask = samples.images[i], samples.labels[i], samples.label_mask[i]
        if rng.random() < 0.5:
            image, lab, mask = image[:, ::-1], swap_left_right(lab[:, ::-1]), mask[swap]
        image, lab = augment_slice(np.ascontiguousarray(image), np.ascontiguousarray(lab), rng,
                                   augment)
        r0, c0 = _crop_box(rng, size, crop)
        images.append(torch.from_numpy(np.ascontiguousarray(image[r0:r0 + crop,
                                                                   c0:c0 + crop])))
        targets.append(torch.from_numpy(np.ascontiguousarray(lab[r0:r0 + crop,
                                                                 c0:c0 + crop])).long())
        masks.append(torch.from_numpy(np.ascontiguousarray(mask)))
    return torch.stack(images)[:, None], torch.stack(targets), torch.stack(masks)


def validation_set(n: int, seed: int, shapes: list | None, render: RenderConfig
                   ) -> tuple[torch.Tensor, np.ndarray]:
    """Fixed synthetic validation images (full frames, their own seeds) and labels."""
    tissue, labels, _ = render_pool(n, seed, shapes, render)
    gen = torch.Generator().manual_seed(seed)
    images = torch.stack([synthesize(torch.from_numpy(t).long(), gen)[0] for t in tissue])
    return images[:, None], labels


def _val_dice(model: Segmenter, images: torch.Tensor, labels: np.ndarray,
              device: torch.device) -> float:
    pred = model.predict_proba(images, batch_size=8, device=device).argmax(1)
    scores = [v for v in dice_per_label(pred, labels).values() if not math.isnan(v)]
    return float(np.mean(scores))


def train_synthetic(model: Segmenter, config: SynthTrainConfig, shapes: list | None,
                    checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
                    progress: ProgressFn | None = None,
                    render: RenderConfig | None = None,
                    contrast: ContrastConfig | None = None,
                    real: AtlasSamples | None = None) -> list[dict[str, Any]]:
    """Train ``model`` in place; returns the history (one entry per validation).

    ``real``: labelled real slices on the frame, ``config.real_share`` of each batch.
    """
    render = render or RenderConfig()
    n_real = int(round(config.real_share * config.batch_size)) if real is not None else 0
    if real is not None and not 0 < n_real < config.batch_size:
        raise ValueError(f"real_share {config.real_share} of a batch of {config.batch_size} "
                         "must leave at least one real and one synthetic slice")
    device = resolve_device(config.device)
    model.to(device)
    group = group_from_env(device)
    if config.batch_size < group.size:
        raise ValueError(f"a batch of {config.batch_size} cannot be shared by {group.size} "
                         "processes")
    part = group.part(config.batch_size)  # this process's share of every batch
    n_synth = max(0, min(part.stop, config.batch_size - n_real) - part.start)
    n_real_here = part.stop - part.start - n_synth
    rng, gen = _generators(config.seed, group, 0)
    torch.manual_seed(config.seed)
    tissue, labels, _ = render_pool(config.pool, config.seed * 1_000_003 + 1, shapes, render,
                                    workers=config.workers)
    val_images, val_labels = validation_set(config.val, 990_000_000 + config.seed, shapes,
                                            render)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = DiceCELoss()
    mask = torch.ones((config.batch_size, NUM_CLASSES), dtype=torch.bool)
    history: list[dict[str, Any]] = []
    start = 0
    folder = Path(checkpoint_dir) / "checkpoint" if checkpoint_dir is not None else None
    if resume and folder is not None and find_checkpoint(folder) is not None:
        ck = load_checkpoint(folder)
        if ck.trainer_state.get("config") != json.loads(json.dumps(asdict(config))):
            raise ValueError(f"{folder} was made with other settings; use another folder")
        model.load_state_dict(ck.model_state)
        optimizer.load_state_dict(ck.optimizer_state)
        start = int(ck.trainer_state["step"])
        history = list(ck.trainer_state["history"])
        if group.size > 1:  # the checkpoint holds the first process's draws only
            rng, gen = _generators(config.seed, group, start)
        else:
            rng.bit_generator.state = ck.trainer_state["numpy_rng"]
            gen.set_state(ck.rng_state["synth"])
        torch.set_rng_state(ck.rng_state["torch_cpu"])
    t0, losses = time.perf_counter(), []
    for step in range(start, config.steps):
        for params in optimizer.param_groups:
            params["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        x, y, batch_mask = _local_batch(tissue, labels, real, n_synth, n_real_here, mask,
                                        config.crop, rng, gen, contrast,
                                        AugmentConfig(remap=config.real_remap))
        model.train()
        optimizer.zero_grad(set_to_none=True)
        # this process's part of the batch; the parts' weighted gradients are summed
        loss = data_parallel_step(
            group, list(model.parameters()), config.batch_size,
            lambda _, x=x, y=y, m=batch_mask: loss_fn(model(x.to(device), use_crf=False),
                                                      y.to(device), m.to(device)))
        optimizer.step()
        losses.append(loss)
        done = step + 1
        if not group.main:
            continue  # only the first process validates, reports and checkpoints
        if done % config.val_every == 0 or done == config.steps:
            entry = {"step": done, "loss": float(np.mean(losses)),
                     "val_dice": _val_dice(model, val_images, val_labels, device),
                     "seconds": time.perf_counter() - t0}
            history.append(entry)
            losses = []
            report(progress, "synth", done, config.steps,
                   message=f"step {done}: loss {entry['loss']:.4f}, synthetic validation Dice "
                           f"{entry['val_dice']:.4f}, {entry['seconds']:.0f} s",
                   values={k: v for k, v in entry.items() if k != "step"})
        if folder is not None and (done % config.checkpoint_every == 0 or done == config.steps):
            state = {"step": done, "history": history, "numpy_rng": rng.bit_generator.state,
                     "config": json.loads(json.dumps(asdict(config)))}
            save_checkpoint(folder, model.state_dict(), optimizer, state, model.state_dict(),
                            {"synth": gen.get_state(), "torch_cpu": torch.get_rng_state()})
    return history


def _local_batch(tissue: np.ndarray, labels: np.ndarray, real: AtlasSamples | None,
                 n_synth: int, n_real: int, mask: torch.Tensor, crop: int,
                 rng: np.random.Generator, gen: torch.Generator,
                 contrast: ContrastConfig | None, augment: AugmentConfig
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """This process's part of a batch: synthetic slices first, then real ones."""
    xs, ys, masks = [], [], []
    if n_synth:
        x, y = make_batch(tissue, labels, rng.integers(0, len(tissue), n_synth), crop, rng,
                          gen, contrast)
        xs.append(x)
        ys.append(y)
        masks.append(mask[:n_synth])
    if n_real and real is not None:
        x, y, m = real_batch(real, rng.integers(0, len(real), n_real), crop, rng, augment)
        xs.append(x)
        ys.append(y)
        masks.append(m)
    return torch.cat(xs), torch.cat(ys), torch.cat(masks)


def _generators(seed: int, group: Group, step: int) -> tuple[np.random.Generator,
                                                              torch.Generator]:
    """Draws of the batches: one process as always; under torchrun each process its own,
    so the parts of a batch differ (and anew from ``step`` when resumed)."""
    if group.size == 1:
        return np.random.default_rng(seed), torch.Generator().manual_seed(seed + 1)
    rng = np.random.default_rng([seed, group.rank, step])
    return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))


def _real_note(samples: AtlasSamples) -> dict[str, int]:
    """Slices used per real series (``real:<case>/<contrast>:<k>`` sources)."""
    counts: dict[str, int] = {}
    for source in samples.sources:
        name = source.split(":")[1]
        counts[name] = counts.get(name, 0) + 1
    return counts


def default_segmenter(width: int = 16) -> SegmenterConfig:
    """The shipped model's network: U-Net with instance norm (contrast varies per image),
    no CRF (see the README's comparison)."""
    return SegmenterConfig(unet={"base_width": width, "norm": "instance"}, use_crf=False)


def fit_synthetic_bundle(out: str | os.PathLike[str], name: str, config: SynthTrainConfig,
                         width: int = 16, shapes_dir: str | os.PathLike[str] | None = None,
                         checkpoint_dir: str | os.PathLike[str] | None = None,
                         resume: bool = False,
                         progress: ProgressFn | None = None,
                         init: str | os.PathLike[str] | None = None,
                         render: RenderConfig | None = None,
                         real: Sequence[str] = (),
                         real_root: str | os.PathLike[str] | None = None) -> Path:
    """Train on synthetic slices and write the bundle (weights, card, atlases, log).

    ``shapes_dir``: real MF/ES label maps (:mod:`..synth.real_shapes`); without them the
    muscles are the generator's ellipses, and the card says so. ``init``: a bundle of the
    same network whose weights training starts from (a longer schedule in two legs); its
    name and training are kept in the card. ``render``: the spatial variation (default
    :class:`RenderConfig`), recorded in the card. ``real``: labelled real cases or series
    (:func:`..real_training.pick_series`, under ``real_root``) mixed into every batch
    (``config.real_share``); the card names them, so no benchmark counts them as unseen.
    Under ``torchrun`` each process draws and trains its part of every batch
    (:mod:`.distributed`) and the first writes the bundle.
    """
    import tempfile

    from ..models import MODELS_DIR
    from ..preprocess.chain import BODY, PreprocessConfig
    from ..synth.real_shapes import load_real_muscles
    from .bundle import ModelCard, save_bundle
    from .fit import history_csv

    if Path(out).exists():
        raise FileExistsError(f"{out}: a model bundle already exists here")
    shapes = load_real_muscles(shapes_dir) if shapes_dir is not None else []
    preprocess = PreprocessConfig(frame=BODY)
    real_samples = None
    if real:
        from ..preprocess.atlas import load_atlases
        from ..real_training import frame_samples, pick_series

        series = pick_series(real, Path(real_root) if real_root is not None else None)
        real_samples = frame_samples(series, preprocess, load_atlases(MODELS_DIR / "atlases"))
    elif config.real_share:
        raise ValueError("real_share needs real cases to draw from")
    torch.manual_seed(config.seed)
    model = Segmenter(default_segmenter(width))
    started_from = None
    if init is not None:
        from .bundle import load_bundle

        state, init_card = load_bundle(init)
        model.load_state_dict(state)  # strict: another network is refused
        started_from = {"name": init_card.name, "version": init_card.version,
                        "training": {k: init_card.training.get(k)
                                     for k in ("steps", "lr", "pool", "seed", "started_from")}}
    start = time.perf_counter()
    render = render or RenderConfig()
    history = train_synthetic(model, config, shapes or None, checkpoint_dir, resume, progress,
                              render, real=real_samples)
    if not group_from_env(resolve_device(config.device)).main:
        return Path(out)  # under torchrun only the first process writes the bundle
    card = ModelCard(
        name=name,
        network=model.to_dict(),
        preprocessing={**config_to_dict(preprocess), "atlases": "atlases/",
                       "postprocess": "largest_component",
                       "space": "256x256 at 1 mm, x to the patient's left, y posterior, "
                                "body frame"},
        training={**asdict(config), "started_from": started_from, "history": history,
                  "render": asdict(render),
                  "contrast": asdict(ContrastConfig()),
                  "device": str(next(model.parameters()).device)},
        data={"generator": "synthetic slices of random contrast (napari_paraspinal.synth)",
              "real_shapes": (f"{len(shapes)} MF/ES label maps from {Path(shapes_dir).name}"
                              if shapes else "none: ellipses only"),
              "real_images_used": (_real_note(real_samples) if real_samples is not None
                                   else "none")},
        metrics={"synthetic_val_dice": history[-1]["val_dice"] if history else float("nan"),
                 "train_seconds": round(time.perf_counter() - start, 1)},
    )
    with tempfile.TemporaryDirectory() as tmp:
        log = history_csv(history, Path(tmp) / "training_log.csv")
        return save_bundle(out, {k: v.cpu() for k, v in model.state_dict().items()}, card,
                           extra_files={"atlases": MODELS_DIR / "atlases", log.name: log})
