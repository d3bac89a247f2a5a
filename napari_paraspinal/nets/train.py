"""Training of a :class:`Segmenter`: U-Net pretraining, then U-Net and CRF jointly.

Each epoch draws its samples from the training slices (:func:`training_epoch`):

* multi-data training (the paper's): the gradient-magnitude image of every slice
  (:func:`gradient_magnitude`) is an extra sample with the same labels, so the network also
  learns from edges and relies less on absolute intensity;
* left-right mirroring, each sample with probability 1/2: the columns are reversed AND the left
  and right label values (and label-mask columns) are exchanged, since a mirrored left muscle
  is on the right and must be taught as the right one.

Phase 1 trains the U-Net alone (CRF bypassed); phase 2 starts from phase 1's best state and
trains all parameters with the CRF in the loop. Each phase stops early after ``patience``
epochs without a better validation score: the mean Dice (argmax, :mod:`.metrics`) over the
foreground classes, each class pooled over the validation slices that annotate it. Phase 2
first scores phase 1's best state with the CRF (history entry with ``epoch`` 0).

Every state is scored as it would run: phase 1's without the CRF, phase 2's with it. The state
returned is the best of them all, so a CRF that makes the segmentation worse is not shipped:
when a phase-1 state beats every phase-2 state, the model is returned without its CRF
(``use_crf`` False in its config, so a model card written from it says so, and no CRF weights),
and :class:`TrainResult` says which phase won and why. A model without a CRF, or one whose
phase 2 never ran (``epochs_joint`` 0, cancelled before it), keeps its configuration; so
does one trained with ``keep_crf`` (an ablation), which returns phase 2's best state.

With a ``checkpoint_dir`` the whole training state (weights, best weights, Adam state, history,
early-stopping counters, numpy and torch generator states) is saved after every epoch and after
phase 2's baseline (:mod:`.checkpoint`: safetensors and JSON, never a pickle), and ``resume``
continues a killed or cancelled run where it stopped: on CPU the result equals that of an
uninterrupted run (bit for bit, per-epoch ``seconds`` aside).

Started by ``torchrun --nproc_per_node N``, the processes share every batch and sum their
gradients (:mod:`.distributed`): the same training as one process, to rounding error.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..core.errors import InputError
from ..core.labels import LR_SWAP, NUM_CLASSES, swap_left_right
from .augment import augment_batch
from .checkpoint import STATE, Checkpoint, find_checkpoint, load_checkpoint, save_checkpoint
from .distributed import Group, agree, data_parallel_step, group_from_env
from .losses import DiceCELoss
from .metrics import dice_per_label
from .segmenter import Segmenter, resolve_device

StateDict = dict[str, torch.Tensor]

#: The checkpoint's folder inside ``train``'s ``checkpoint_dir``.
CHECKPOINT = "checkpoint"
#: TrainConfig fields that may differ on resume (they do not change the numbers on CPU).
RESUME_MAY_CHANGE = ("device", "num_threads")
_CHECKPOINT_KEYS = ("phase", "epoch", "phase_done", "phase_best", "bad", "best_score",
                    "best_epoch", "stopped_early", "history", "numpy_rng", "config", "network",
                    "data")


@dataclass
class TrainConfig:
    """Optimisation settings; ``epochs_joint`` 0 (or a model without CRF) skips phase 2.

    ``num_threads`` sets torch's CPU threads during training (None: leave as is) and is
    restored afterwards. ``augment`` moves and re-lights every slice each epoch (fine-tuning
    on few cases). ``max_minutes_pretrain`` ends the U-Net phase after the first epoch
    that brings its training time (the sum of its epochs' seconds) past the limit, for a fixed
    compute budget; the epoch count then depends on the machine.
    """

    epochs_pretrain: int = 100
    epochs_joint: int = 20
    batch_size: int = 20
    lr: float = 1e-3
    patience: int = 10
    multi_data: bool = True
    flip: bool = True
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"
    max_minutes_pretrain: float | None = None
    augment: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs_pretrain", "epochs_joint"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0")
        if self.batch_size < 1 or self.patience < 1:
            raise ValueError("TrainConfig.batch_size and patience must be >= 1")
        if not self.lr >= 0:
            raise ValueError(f"TrainConfig.lr must be >= 0, got {self.lr}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError("TrainConfig.num_threads must be None or >= 1")


@dataclass
class TrainData:
    """Slices ``N x H x W`` float32, labels ``N x H x W`` uint8, ``label_mask`` ``N x C`` bool.

    ``label_mask[i, c]`` says whether class ``c`` is annotated in slice ``i`` (None: all are).
    """

    images: np.ndarray
    labels: np.ndarray
    label_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.images = np.asarray(self.images, dtype=np.float32)
        labels = np.asarray(self.labels)
        if self.images.ndim != 3 or labels.shape != self.images.shape:
            raise ValueError(f"images and labels must both be N x H x W, got "
                             f"{self.images.shape} and {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise ValueError(f"label values must lie in 0..{NUM_CLASSES - 1}")
        self.labels = labels.astype(np.uint8)
        n = len(self.images)
        if self.label_mask is None:
            self.label_mask = np.ones((n, NUM_CLASSES), dtype=bool)
        self.label_mask = np.asarray(self.label_mask, dtype=bool)
        if self.label_mask.shape != (n, NUM_CLASSES):
            raise ValueError(f"label_mask must be {(n, NUM_CLASSES)}, got {self.label_mask.shape}")

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class TrainResult:
    """Outcome of :func:`train`; the model is left holding ``best_state_dict``.

    ``history`` has one dict per epoch (``phase`` "unet" or "joint", ``epoch`` within the phase,
    ``loss``, ``val_dice``, ``seconds``, ``samples``); ``best_epoch`` indexes it (-1: no epoch
    finished, the state is the initial one). ``stopped_early``: a phase ended by patience.
    ``winner``: the phase of the state returned ("unet", "joint", or "" when no epoch
    finished); ``use_crf``: whether the model returned runs its CRF; ``why``: the reason, in
    words, with the scores compared.
    """

    best_state_dict: StateDict
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    cancelled: bool = False
    winner: str = ""
    use_crf: bool = False
    why: str = ""

    @property
    def best_val_dice(self) -> float:
        return self.history[self.best_epoch]["val_dice"] if self.best_epoch >= 0 else float("nan")


def gradient_magnitude(image: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Sobel gradient magnitude of a slice (or of each slice of N x H x W), in [0, 1].

    Divided by its ``percentile`` (max if that is 0) and clipped, so a few extreme edges do not
    squash the rest; a flat slice gives zeros. Borders use nearest-value padding (no fake edge).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return np.stack([gradient_magnitude(s, percentile) for s in image])
    if image.ndim != 2:
        raise ValueError(f"image must be H x W or N x H x W, got shape {image.shape}")
    gy = ndimage.sobel(image, axis=0, mode="nearest")
    gx = ndimage.sobel(image, axis=1, mode="nearest")
    mag = np.hypot(gx, gy)
    scale = float(np.percentile(mag, percentile))
    if scale <= 0:
        scale = float(mag.max())
    if scale <= 0:
        return np.zeros_like(mag)
    return np.clip(mag / scale, 0.0, 1.0).astype(np.float32)


def mirror_left_right(data: TrainData) -> TrainData:
    """The slices mirrored in x, with left/right label values and label-mask columns swapped."""
    lut = np.array([LR_SWAP[c] for c in range(NUM_CLASSES)])
    return TrainData(
        images=data.images[:, :, ::-1].copy(),
        labels=swap_left_right(data.labels[:, :, ::-1]),
        label_mask=data.label_mask[:, lut],
    )


def training_epoch(data: TrainData, config: TrainConfig, rng: np.random.Generator) -> TrainData:
    """One epoch's samples: slices (+ gradient images), randomly mirrored, shuffled; with
    ``config.augment`` each slice is also randomly moved and re-lit (:mod:`.augment`)."""
    samples = data
    if config.augment:
        images, labels = augment_batch(data.images, data.labels, rng)
        samples = TrainData(images, labels, data.label_mask)
        data = samples
    if config.multi_data:
        samples = TrainData(
            images=np.concatenate([data.images, gradient_magnitude(data.images)]),
            labels=np.concatenate([data.labels, data.labels]),
            label_mask=np.concatenate([data.label_mask, data.label_mask]),
        )
    if config.flip:
        flip = rng.random(len(samples)) < 0.5
        mirrored = mirror_left_right(samples)
        samples = TrainData(
            images=np.where(flip[:, None, None], mirrored.images, samples.images),
            labels=np.where(flip[:, None, None], mirrored.labels, samples.labels),
            label_mask=np.where(flip[:, None], mirrored.label_mask, samples.label_mask),
        )
    order = rng.permutation(len(samples))
    return TrainData(samples.images[order], samples.labels[order], samples.label_mask[order])


def validation_dice(model: Segmenter, val: TrainData, use_crf: bool, batch_size: int,
                    device: torch.device) -> float:
    """Mean foreground Dice of the argmax, each class pooled over the slices annotating it."""
    was_training = model.training
    model.eval()
    preds = []
    try:
        with torch.inference_mode():
            for start in range(0, len(val), batch_size):
                x = torch.from_numpy(val.images[start:start + batch_size, None]).to(device)
                preds.append(model(x, use_crf=use_crf).argmax(1).cpu().numpy())
    finally:
        model.train(was_training)
    pred = np.concatenate(preds)
    scores = []
    for c in range(1, NUM_CLASSES):
        rows = val.label_mask[:, c]
        if rows.any():
            scores.append(dice_per_label(pred[rows], val.labels[rows], [c])[c])
    scores = [s for s in scores if not np.isnan(s)]
    return float(np.mean(scores)) if scores else float("nan")


def _snapshot(model: torch.nn.Module) -> StateDict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _config_fingerprint(config: TrainConfig) -> dict[str, Any]:
    """The config fields a resumed run must share with the checkpoint, as JSON gives them."""
    d = {k: v for k, v in asdict(config).items() if k not in RESUME_MAY_CHANGE}
    return json.loads(json.dumps(d))


def _data_digest(data: TrainData) -> str:
    """SHA-256 of the slices, labels and label mask (with their shapes and types)."""
    h = hashlib.sha256()
    for array in (data.images, data.labels, data.label_mask):
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


def _differences(saved: Any, current: Any) -> str:
    if isinstance(saved, dict) and isinstance(current, dict):
        keys = sorted(set(saved) | set(current))
        return ", ".join(f"{k}: {saved.get(k)!r} in the checkpoint, {current.get(k)!r} now"
                         for k in keys if saved.get(k) != current.get(k))
    return f"{saved!r} in the checkpoint, {current!r} now"


class _Trainer:
    """State shared by the two phases: best state, history, cancel flag, checkpointing.

    ``resume`` is the checkpoint to continue from, consumed by the :meth:`run_phase` call of
    its phase (an earlier phase, finished before it, is skipped).
    """

    def __init__(self, model: Segmenter, train: TrainData, val: TrainData, config: TrainConfig,
                 progress: Callable[[dict[str, Any]], None] | None,
                 should_stop: Callable[[], bool] | None, device: torch.device,
                 checkpoint: Path | None = None, keep_crf: bool = False,
                 group: Group | None = None) -> None:
        self.model, self.train_data, self.val, self.config = model, train, val, config
        self.group = group or Group()
        self.keep_crf = keep_crf
        self.progress, self.should_stop, self.device = progress, should_stop, device
        self.loss_fn = DiceCELoss()
        self.rng = np.random.default_rng(config.seed)
        self.result = TrainResult(best_state_dict=_snapshot(model))
        self.best_score = -np.inf
        self.checkpoint = checkpoint
        self.resume: Checkpoint | None = None
        self.data_digest = ({"train": _data_digest(train), "val": _data_digest(val)}
                            if checkpoint is not None else {})

    def save(self, optimizer: torch.optim.Optimizer, phase: str, epoch: int, phase_done: bool,
             phase_best: float, bad: int) -> None:
        """Checkpoint everything needed to go on after ``epoch`` of ``phase`` (if asked to)."""
        if self.checkpoint is None or not self.group.main:
            return
        state = {
            "phase": phase, "epoch": epoch, "phase_done": phase_done,
            "phase_best": float(phase_best), "bad": bad, "best_score": float(self.best_score),
            "best_epoch": self.result.best_epoch, "stopped_early": self.result.stopped_early,
            "history": self.result.history, "numpy_rng": self.rng.bit_generator.state,
            "config": _config_fingerprint(self.config), "network": self.model.to_dict(),
            "data": self.data_digest, "keep_crf": self.keep_crf,
        }
        rng = {"torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(self.checkpoint, self.model.state_dict(), optimizer, state,
                        self.result.best_state_dict, rng)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Take over a checkpoint's state; ValueError if it was made for another run."""
        path = checkpoint.folder / STATE
        state = checkpoint.trainer_state
        missing = [k for k in _CHECKPOINT_KEYS if k not in state]
        if missing or state["phase"] not in ("unet", "joint"):
            raise InputError(path, f"corrupt checkpoint: missing or bad entries "
                                   f"{missing or ['phase']}")
        current = {"config": _config_fingerprint(self.config),
                   "network": json.loads(json.dumps(self.model.to_dict())),
                   "data": self.data_digest}
        what = {"config": "training configuration", "network": "network",
                "data": "training or validation data"}
        for key, value in current.items():
            if state[key] != value:
                raise ValueError(f"cannot resume from {checkpoint.folder}: it was made with "
                                 f"another {what[key]} ({_differences(state[key], value)}); "
                                 f"resume with the same settings or use another folder")
        if state.get("keep_crf", self.keep_crf) != self.keep_crf:
            raise ValueError(f"cannot resume from {checkpoint.folder}: it was made with "
                             f"keep_crf={state['keep_crf']}, not {self.keep_crf}")
        try:
            self.model.load_state_dict(checkpoint.model_state)
            self.result.best_state_dict = checkpoint.best_state
            self.result.history = list(state["history"])
            self.result.best_epoch = int(state["best_epoch"])
            self.result.stopped_early = bool(state["stopped_early"])
            self.best_score = float(state["best_score"])
            self.rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(checkpoint.rng_state["torch_cpu"])
            if self.device.type == "cuda" and "torch_cuda" in checkpoint.rng_state:
                torch.cuda.set_rng_state(checkpoint.rng_state["torch_cuda"], self.device)
        except (RuntimeError, ValueError, TypeError, KeyError) as err:
            raise InputError(path, f"corrupt checkpoint: {err}") from err
        self.resume = checkpoint

    def record(self, entry: dict[str, Any]) -> bool:
        """Append an epoch; keep the state if its score is the best so far. True if it was."""
        self.result.history.append(entry)
        if self.progress is not None and self.group.main:
            self.progress(dict(entry))
        if entry["val_dice"] > self.best_score:
            self.best_score = entry["val_dice"]
            self.result.best_state_dict = _snapshot(self.model)
            self.result.best_epoch = len(self.result.history) - 1
            return True
        return False

    def run_epoch(self, optimizer: torch.optim.Optimizer, use_crf: bool) -> float | None:
        """Train one epoch; its mean loss, or None if cancelled part way."""
        samples = training_epoch(self.train_data, self.config, self.rng)
        bs = self.config.batch_size
        total = 0.0
        self.model.train()
        for start in range(0, len(samples), bs):
            if self.should_stop is not None and self.should_stop():
                self.result.cancelled = True
                return None
            x = torch.from_numpy(samples.images[start:start + bs, None]).to(self.device)
            y = torch.from_numpy(samples.labels[start:start + bs].astype(np.int64)).to(self.device)
            mask = torch.from_numpy(samples.label_mask[start:start + bs]).to(self.device)
            optimizer.zero_grad(set_to_none=True)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            loss = data_parallel_step(  # one process: the whole batch, as plain training
                self.group, params, len(x),
                lambda part, x=x, y=y, mask=mask: self.loss_fn(
                    self.model(x[part], use_crf=use_crf), y[part], mask[part]))
            optimizer.step()
            total += loss * len(x)
        return total / len(samples)

    def evaluate(self, use_crf: bool) -> float:
        return agree(self.group, validation_dice(self.model, self.val, use_crf,
                                                 self.config.batch_size, self.device))

    def run_phase(self, phase: str, epochs: int, params: list[torch.nn.Parameter],
                  use_crf: bool) -> None:
        """Up to ``epochs`` epochs with early stopping on this phase's best score.

        Phase "joint" starts from the best state so far and scores it first (epoch 0). With
        :attr:`resume` set, the phase goes on after the checkpoint's epoch instead.
        """
        optimizer = torch.optim.Adam(params, lr=self.config.lr)
        first, phase_best, bad = 1, -np.inf, 0
        if self.resume is not None:
            state = self.resume.trainer_state
            if state["phase"] != phase:  # this phase ended before the checkpoint was made
                return
            try:
                optimizer.load_state_dict(self.resume.optimizer_state)
            except (ValueError, KeyError, TypeError) as err:
                raise InputError(self.resume.folder, f"corrupt checkpoint: {err}") from err
            self.resume = None
            if state["phase_done"]:
                return
            first = int(state["epoch"]) + 1
            phase_best, bad = float(state["phase_best"]), int(state["bad"])
        elif phase == "joint":
            self.model.load_state_dict(self.result.best_state_dict)
            if self.keep_crf:  # only states scored with the CRF compete from here on
                self.best_score = -np.inf
            t0 = time.perf_counter()
            score = self.evaluate(use_crf)
            self.record({"phase": phase, "epoch": 0, "loss": float("nan"), "val_dice": score,
                         "seconds": time.perf_counter() - t0, "samples": 0})
            phase_best = score
            self.save(optimizer, phase, 0, epochs == 0, phase_best, bad)
        for epoch in range(first, epochs + 1):
            t0 = time.perf_counter()
            loss = self.run_epoch(optimizer, use_crf)
            if loss is None:
                return
            score = self.evaluate(use_crf)
            n = len(self.train_data) * (2 if self.config.multi_data else 1)
            self.record({"phase": phase, "epoch": epoch, "loss": loss, "val_dice": score,
                         "seconds": time.perf_counter() - t0, "samples": n})
            if score > phase_best:
                phase_best, bad = score, 0
            else:
                bad += 1
            stop = bad >= self.config.patience
            self.result.stopped_early |= stop
            stop |= phase == "unet" and self._over_time(phase)
            self.save(optimizer, phase, epoch, stop or epoch == epochs, phase_best, bad)
            if stop:
                return

    def _over_time(self, phase: str) -> bool:
        """True once the phase's epochs took longer than ``max_minutes_pretrain``."""
        limit = self.config.max_minutes_pretrain
        spent = sum(e["seconds"] for e in self.result.history if e["phase"] == phase)
        return limit is not None and spent > 60 * limit

    def choose(self) -> None:
        """Say which phase won; drop the CRF when the U-Net alone beat every joint state.

        The best state is already the best of all scores (U-Net states scored without the
        CRF, joint ones with it); this makes the model run the way its state was scored.
        """
        result, model = self.result, self.model
        history = result.history

        def best(phase: str) -> float:
            scores = [h["val_dice"] for h in history if h["phase"] == phase]
            return max(scores, default=float("nan"))

        result.winner = history[result.best_epoch]["phase"] if result.best_epoch >= 0 else ""
        joint_scored = any(h["phase"] == "joint" for h in history)
        if model.crf is None:
            result.why = "the model has no CRF"
        elif not joint_scored:
            result.why = ("the joint phase did not run, so the CRF was never scored; the "
                          "model keeps it as configured")
        elif self.keep_crf:
            result.why = (f"keep_crf: the CRF is kept whatever it scores; the best joint "
                          f"state scored {best('joint'):.4f} with it, the U-Net alone "
                          f"{best('unet'):.4f} without it")
        elif result.winner == "joint":
            result.why = (f"with the CRF the best joint state scored {best('joint'):.4f}, "
                          f"above the U-Net alone's {best('unet'):.4f}")
        elif result.winner != "unet":
            result.why = "no epoch scored; the model keeps its initial state and its CRF"
        else:
            result.why = (f"the U-Net alone scored {best('unet'):.4f} without the CRF, "
                          f"above every joint state with it (best {best('joint'):.4f}); "
                          f"the model runs without its CRF")
            model.crf = None
            model.config = replace(model.config, use_crf=False)
            result.best_state_dict = {k: v for k, v in result.best_state_dict.items()
                                      if not k.startswith("crf.")}
        result.use_crf = model.config.use_crf


def train(
    model: Segmenter,
    train: TrainData,
    val: TrainData,
    config: TrainConfig | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    keep_crf: bool = False,
) -> TrainResult:
    """Train ``model`` in place (see the module doc) and leave it holding the best state.

    When the U-Net alone beats every state scored with the CRF, the model's CRF is removed
    (``model.crf`` None, ``model.config.use_crf`` False) so that it runs as it was scored.
    ``keep_crf`` True keeps the CRF whatever it scores and returns the best joint state (for
    an ablation, which measures the CRF as trained rather than the model that would ship).

    ``progress`` gets each history entry as it is made; ``should_stop`` is asked before every
    batch, and True ends training at once (the unfinished epoch is dropped, ``cancelled`` set).
    Deterministic for a given ``config.seed`` on CPU (the model's initial weights are the
    caller's: seed torch before building it).

    ``checkpoint_dir``: a folder in which the checkpoint is kept (its subfolder ``checkpoint``,
    rewritten after every epoch); a checkpoint already there is refused (FileExistsError)
    unless ``resume``. ``resume``: continue from that checkpoint (same phase, next epoch) when
    there is one, else start afresh; the model's weights are replaced by the checkpoint's, the
    history returned includes the epochs before it (``progress`` sees only new ones), and a
    checkpoint made with other settings (any TrainConfig field but ``device`` and
    ``num_threads``), another network or other data is refused with a ValueError.
    """
    config = config if config is not None else TrainConfig()
    if len(train) == 0 or len(val) == 0:
        raise ValueError("training and validation data must not be empty")
    if not any((val.labels[val.label_mask[:, c]] == c).any() for c in range(1, NUM_CLASSES)):
        raise ValueError("the validation data has no annotated foreground pixel to score")
    folder = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir is not None else None
    if resume and folder is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    found = find_checkpoint(folder) if folder is not None else None
    if found is not None and not resume:
        raise FileExistsError(f"{found} holds a checkpoint: pass resume=True to continue it, "
                              f"or use another checkpoint_dir")
    restored = load_checkpoint(folder) if found is not None else None
    device = resolve_device(config.device)
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    try:
        torch.manual_seed(config.seed)
        model.to(device)
        trainer = _Trainer(model, train, val, config, progress, should_stop, device, folder,
                           keep_crf, group_from_env(device))
        if restored is not None:
            trainer.restore(restored)
        trainer.run_phase("unet", config.epochs_pretrain, list(model.unet.parameters()), False)
        if model.crf is not None and config.epochs_joint > 0 and not trainer.result.cancelled:
            trainer.run_phase("joint", config.epochs_joint, list(model.parameters()), True)
        trainer.choose()
        result = trainer.result
        model.load_state_dict(result.best_state_dict)
        return result
    finally:
        torch.set_num_threads(threads)
