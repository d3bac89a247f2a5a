"""The two-phase training loop behind :func:`.train.train` (:class:`Trainer`) and its result.

The trainer runs the phases (U-Net alone, then U-Net and CRF jointly) with early stopping,
keeps the best state and the history, saves and restores the whole training state through
:mod:`.checkpoint`, and at the end chooses which phase's state ships (with or without the CRF).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.errors import InputError
from ..core.labels import NUM_CLASSES
from ..jobs import Cancel, Progress, ProgressFn, cancelled
from .checkpoint import STATE, Checkpoint, save_checkpoint
from .distributed import Group, agree, data_parallel_step
from .losses import DiceCELoss
from .metrics import dice_per_label
from .segmenter import Segmenter
from .train_config import TrainConfig
from .train_data import TrainData, training_epoch

StateDict = dict[str, torch.Tensor]

#: TrainConfig fields that may differ on resume (they do not change the numbers on CPU).
RESUME_MAY_CHANGE = ("device", "num_threads")
_CHECKPOINT_KEYS = ("phase", "epoch", "phase_done", "phase_best", "bad", "best_score",
                    "best_epoch", "stopped_early", "history", "numpy_rng", "config", "network",
                    "data")
#: The training phases; each is the ``stage`` of its epochs' progress events.
PHASES = ("unet", "joint")


@dataclass
class TrainResult:
    """Outcome of :func:`.train.train`; the model is left holding ``best_state_dict``.

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


def epoch_event(entry: dict[str, Any], total: int) -> Progress:
    """A history entry as a progress event: stage the phase, ``done`` the epoch of
    ``total``, ``values`` its numbers (``loss`` NaN: epoch 0 of a phase only scores)."""
    loss = entry["loss"]
    loss_text = "start (no training yet)" if math.isnan(loss) else f"loss {loss:.4f}"
    return Progress(entry["phase"], entry["epoch"], total,
                    message=f"{entry['phase']} epoch {entry['epoch']}: {loss_text}, "
                            f"validation Dice {entry['val_dice']:.4f}",
                    values={k: v for k, v in entry.items() if k not in ("phase", "epoch")})


def history_entry(event: Progress) -> dict[str, Any]:
    """The history entry an epoch's progress event was made from."""
    return {"phase": event.stage, "epoch": event.done, **(event.values or {})}


class Trainer:
    """State shared by the two phases: best state, history, cancel token, checkpointing.

    ``resume`` is the checkpoint to continue from, consumed by the :meth:`run_phase` call of
    its phase (an earlier phase, finished before it, is skipped).
    """

    def __init__(self, model: Segmenter, train: TrainData, val: TrainData, config: TrainConfig,
                 progress: ProgressFn | None, cancel: Cancel | None, device: torch.device,
                 checkpoint: Path | None = None, keep_crf: bool = False,
                 group: Group | None = None) -> None:
        self.model, self.train_data, self.val, self.config = model, train, val, config
        self.group = group or Group()
        self.keep_crf = keep_crf
        self.progress, self.cancel, self.device = progress, cancel, device
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
        if missing or state["phase"] not in PHASES:
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

    def record(self, entry: dict[str, Any], epochs: int) -> bool:
        """Append an epoch (of ``epochs`` in its phase) and report it; keep the state if its
        score is the best so far. True if it was."""
        self.result.history.append(entry)
        if self.progress is not None and self.group.main:
            self.progress(epoch_event(entry, epochs))
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
            if cancelled(self.cancel):
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
                         "seconds": time.perf_counter() - t0, "samples": 0}, epochs)
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
                         "seconds": time.perf_counter() - t0, "samples": n}, epochs)
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
