"""Fine-tune a project's active model on its corrected and verified cases.

``paraspinal finetune PROJECT`` (:func:`finetune_project`) trains a *candidate* from the
active model's weights and registers it in the project's model registry; the candidate
becomes the active model only if it beats the active one on held-out corrected cases.

How, and why:

- **Data.** Every case whose latest label version was made by a person
  (:meth:`.Project.training_cases`) is sent to atlas space through the model's own
  preprocessing chain (the level stored with the case, else detected). A stable part of them
  (``holdout_fraction``, at least one case, chosen by a seeded hash of the case id so that
  adding cases later moves few others) is held out for validation and never trained on.
- **Partial labels.** A case vouches only for the labels listed in the store; a user may have
  corrected only multifidus and erector spinae. Pixels of every other label value are set to
  0 ("not an annotated structure") and the sample's label mask marks only the vouched classes;
  background counts as known only when all eight structures are vouched for. The loss
  (:mod:`..nets.losses`) then merges background with the unannotated classes, so training
  never teaches that an unlabelled psoas is background.
- **Replay.** So that nothing is forgotten, the corrected cases are mixed with a replay sample
  of the original training data. The shipped model was trained on phantoms whose seeds its
  card records; those phantoms are regenerated exactly (the generator is deterministic), so
  the replay *is* a sample of the original training slices. A model whose card names no
  phantom generator gets no replay (noted in the result). A few more replay slices are kept
  aside to measure forgetting (``replay_check``); with ``max_forgetting`` set, a candidate
  that loses more than that on them is not promoted.
- **Validation.** Active model and candidate are scored the same way on the held-out cases:
  probabilities in atlas space mapped back to each case's native grid (exactly what
  :func:`..segment.segment_slice` does), Dice per vouched label, averaged per case and then
  over cases. Native-grid Dice is what users see. The held-out cases also choose the
  training epoch kept (early stopping), which favours the candidate slightly; promotion
  therefore asks for a strict improvement (``min_improvement``).
- **Safety.** The active model is never replaced before validation. Everything a run makes
  lives under ``PROJECT/finetune/run/`` (prepared samples, ``run.json``, the training
  checkpoint, the candidate bundle) until the candidate is registered; a cancelled or killed
  run registers nothing, and ``resume=True`` continues it from its checkpoint. Every
  candidate is registered (card: parent, data, both scores, decision) so the registry keeps
  the record; any earlier version can be made active again with :meth:`.Project.activate`.
- Runs on CPU in minutes for a few dozen cases, on CUDA when present (``device="auto"``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.labels import BY_VALUE, label_mask
from ..nets.bundle import load_card
from ..nets.checkpoint import find_checkpoint
from ..nets.distributed import barrier, group_from_env
from ..nets.fit import evaluate_samples, fit_bundle
from ..nets.metrics import dice_per_label
from ..nets.samples import AtlasSamples
from ..nets.segmenter import SegmenterConfig, resolve_device
from ..nets.train import CHECKPOINT, TrainConfig
from ..preprocess.atlas_space import AtlasMapping, labels_to_atlas, probabilities_to_native
from ..preprocess.chain import AUTO, preprocess_slice
from .records import ModelRow, ProjectError, TrainingCase
from .replay import replay_samples, replay_source
from .store import Project

#: Folder of the project holding fine-tuning runs and the replay cache.
FINETUNE_DIR = "finetune"
RUN = "run"
RUN_JSON = "run.json"
CANDIDATE = "candidate"
REPLAY_CACHE = "replay"

Progress = Callable[[dict[str, Any]], None]


@dataclass
class FinetuneConfig:
    """Settings of a fine-tuning run (JSON-friendly; stored in the candidate's card).

    ``replay``: replay slices mixed into training (None: twice the training cases; 0: none).
    ``joint_epochs``: epochs with the CRF in the loop after the U-Net epochs.
    ``min_improvement``: the candidate's held-out mean Dice must exceed the active model's by
    more than this. ``max_forgetting``: largest allowed drop of Dice on ``replay_check`` slices
    of the original data (None: not a condition, only reported). ``max_minutes`` caps the
    U-Net epochs' time (the epoch running when it is reached finishes).
    """

    holdout_fraction: float = 0.3
    replay: int | None = None
    replay_check: int = 4
    replay_seed: int = 0
    epochs: int = 15
    joint_epochs: int = 1
    patience: int = 5
    lr: float = 3e-4
    batch_size: int = 4
    min_improvement: float = 0.0
    max_forgetting: float | None = 0.05
    seed: int = 0
    device: str = "auto"
    max_minutes: float | None = None
    num_threads: int | None = None
    augment: bool = True
    multi_data: bool | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError("holdout_fraction must lie between 0 and 1")
        for name in ("replay_check", "epochs", "joint_epochs"):
            if getattr(self, name) < 0:
                raise ValueError(f"FinetuneConfig.{name} must be >= 0")
        if self.replay is not None and self.replay < 0:
            raise ValueError("FinetuneConfig.replay must be None or >= 0")
        if self.epochs + self.joint_epochs < 1:
            raise ValueError("FinetuneConfig needs at least one epoch")
        if self.max_forgetting is not None and self.max_forgetting < 0:
            raise ValueError("FinetuneConfig.max_forgetting must be None or >= 0")

    def train_config(self, card_training: dict | None = None) -> TrainConfig:
        """The :class:`TrainConfig` of the candidate's training. ``multi_data`` None follows
        the active model's own training (its card): gradient images only for a model that
        learnt them."""
        multi = self.multi_data
        if multi is None:
            multi = bool((card_training or {}).get("multi_data", False))
        return TrainConfig(epochs_pretrain=self.epochs, epochs_joint=self.joint_epochs,
                           batch_size=self.batch_size, lr=self.lr, patience=self.patience,
                           multi_data=multi, flip=True, seed=self.seed,
                           num_threads=self.num_threads, device=self.device,
                           max_minutes_pretrain=self.max_minutes, augment=self.augment)

    def fingerprint(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in asdict(self).items() if k not in ("device", "num_threads")}


@dataclass
class Score:
    """Held-out Dice of one model: mean over cases, per label, and per case."""

    mean: float
    per_label: dict[str, float] = field(default_factory=dict)
    per_case: dict[str, float] = field(default_factory=dict)


@dataclass
class FinetuneResult:
    """What a run did.

    ``status``: ``promoted``, ``rejected`` or ``cancelled`` (``trained`` for a process of a
    ``torchrun`` group other than the first, which alone validates); ``parent``: the model active
    when the run started; ``model_id``: the registered candidate (None when cancelled);
    ``active`` / ``candidate``: their held-out scores; ``replay_*``: their Dice on the
    ``replay_check`` slices; ``reason``: why it was (not) promoted; ``replay``: replay slices
    trained on; ``history``: the training epochs (:class:`..nets.train.TrainResult`'s).
    """

    status: str
    parent: str
    model_id: str | None = None
    active: Score | None = None
    candidate: Score | None = None
    replay_active: float | None = None
    replay_candidate: float | None = None
    reason: str = ""
    train_cases: list[str] = field(default_factory=list)
    heldout_cases: list[str] = field(default_factory=list)
    replay: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"


# --------------------------------------------------------------------------- labels


def trusted_labels(labels: np.ndarray, verified: Iterable[int]) -> np.ndarray:
    """The label map with every value not vouched for set to 0 (uint8)."""
    keep = np.zeros(256, np.uint8)
    for value in verified:
        keep[int(value)] = int(value)
    return keep[np.asarray(labels).astype(np.uint8)]


# --------------------------------------------------------------------------- run


def split_cases(case_ids: Sequence[str], fraction: float, seed: int) -> tuple[list[str],
                                                                               list[str]]:
    """(training, held-out) ids: the ``fraction`` (at least 1) with the smallest seeded hash.

    Needs two cases or more. A case keeps its side when others are added unless it is pushed
    out of the held-out part by a newcomer with a smaller hash.
    """
    if len(case_ids) < 2:
        raise ValueError("fine-tuning needs at least two corrected or verified cases (one "
                         "to train on, one to validate on)")
    n_val = min(len(case_ids) - 1, max(1, int(round(len(case_ids) * fraction))))
    ranked = sorted(case_ids, key=lambda c: hashlib.sha256(f"{seed}:{c}".encode()).digest())
    held = set(ranked[:n_val])
    return [c for c in case_ids if c not in held], [c for c in case_ids if c in held]


def finetune_project(project: Project, config: FinetuneConfig | None = None,
                     progress: Progress | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     resume: bool = False) -> FinetuneResult:
    """Train a candidate from the active model, validate it, register it, maybe promote it.

    Without an active model (an empty registry) the shipped model is registered first and
    made active. ``progress`` receives dicts with a ``stage`` (``prepare``, ``replay``,
    ``train`` with the epoch's history entry, ``validate``, ``done``); ``should_stop`` is
    polled between cases and between training batches: True cancels, registering nothing
    and keeping what is needed to resume. ``resume=True`` continues the unfinished run of
    this project if there is one (same cases, active model and settings), else starts one;
    ``resume=False`` discards an unfinished run and starts afresh.
    """
    from ..segment import load_model

    config = config or FinetuneConfig()
    start = time.perf_counter()
    notes: list[str] = []
    device = resolve_device(config.device)
    group = group_from_env(device)
    root = project.root / FINETUNE_DIR
    run_dir = root / RUN
    if group.main:  # under torchrun the first process alone writes to the project
        active = _active_model(project, notes)
        cases = {tc.case.id: tc for tc in project.training_cases()}
        for stale in root.glob(f".{RUN}.*"):  # staging left by a run killed while preparing
            shutil.rmtree(stale, ignore_errors=True)
        run = _load_run(project, run_dir, active, cases, config, notes) if resume else None
        if run is None and run_dir.exists():
            shutil.rmtree(run_dir)
            notes.append("discarded an unfinished earlier run")
        model = load_model(active.path, device="cpu")
        if run is None:
            if not _prepare_run(project, run_dir, root / REPLAY_CACHE, active, model, cases,
                                config, notes, progress, should_stop):
                return FinetuneResult("cancelled", active.id, reason="cancelled while "
                                      "preparing", seconds=time.perf_counter() - start,
                                      notes=notes)
            run = _read_run(run_dir)
        if (run_dir / CANDIDATE).exists():
            shutil.rmtree(run_dir / CANDIDATE)
        barrier(group)
    else:  # the others train their part of every batch on the run the first one prepared
        barrier(group)
        active = _active_model(project, notes)
        cases = {tc.case.id: tc for tc in project.training_cases()}
        model = load_model(active.path, device="cpu")
        run = _read_run(run_dir)
    info, train_set, val_set, check_set = run
    notes.extend(n for n in info["notes"] if n not in notes)
    candidate_dir = run_dir / CANDIDATE
    card = load_card(active.path)

    def on_epoch(entry: dict[str, Any]) -> None:
        if progress is not None:
            progress({"stage": "train", **entry})

    resuming = find_checkpoint(run_dir / CHECKPOINT) is not None
    path, trained = fit_bundle(
        candidate_dir, train_set, val_set, active.path / "atlases", card.name,
        SegmenterConfig.from_dict(card.network), config.train_config(card.training),
        model.preprocess,
        parent=active.id, data_note=_data_note(info, card),
        progress=on_epoch, should_stop=should_stop,
        initial_state={k: v.clone() for k, v in model.segmenter.state_dict().items()},
        checkpoint_dir=run_dir, resume=resuming)
    if not group.main:
        barrier(group)  # the first process validates, registers and cleans up
        return FinetuneResult("trained", active.id, reason="trained a part of every batch; "
                              "the first process validates and registers",
                              history=trained.history, seconds=time.perf_counter() - start)
    base = FinetuneResult("cancelled", active.id, train_cases=info["train"],
                          heldout_cases=info["heldout"], replay=info["replay"]["train"],
                          history=trained.history, notes=notes)
    if trained.cancelled:
        shutil.rmtree(path, ignore_errors=True)
        base.reason = "cancelled while training; resume=True continues from the checkpoint"
        base.seconds = time.perf_counter() - start
        return base

    if progress is not None:
        progress({"stage": "validate", "cases": len(info["heldout"])})
    candidate = load_model(path, device=str(device))
    model.segmenter.to(device)
    held = [cases[c] for c in info["heldout"]]
    mappings = [AtlasMapping.from_dict(info["mappings"][c]) for c in info["heldout"]]
    truths = [trusted_labels(project.read_version(tc.version), tc.labels) for tc in held]
    before = score_heldout(model.segmenter, val_set.images, mappings, truths,
                           [tc.labels for tc in held], info["heldout"], device)
    after = score_heldout(candidate.segmenter, val_set.images, mappings, truths,
                          [tc.labels for tc in held], info["heldout"], device)
    replay_before = replay_after = None
    if check_set is not None and len(check_set):
        replay_before = evaluate_samples(model.segmenter, check_set, device=str(device))["mean"]
        replay_after = evaluate_samples(candidate.segmenter, check_set,
                                        device=str(device))["mean"]
    promoted, reason = _decide(before.mean, after.mean, replay_before, replay_after, config)

    card_path = path / "card.json"
    new_card = json.loads(card_path.read_text(encoding="utf-8"))
    new_card["version"] = str(len(project.models()) + 1)
    new_card["metrics"] = {
        "heldout_dice": after.mean, "heldout_dice_per_label": after.per_label,
        "heldout_dice_per_case": after.per_case, "parent_heldout_dice": before.mean,
        "parent_heldout_dice_per_label": before.per_label,
        "replay_dice": replay_after, "parent_replay_dice": replay_before,
        "heldout_cases": len(held), "metric": "native-grid Dice per vouched label, mean per "
                                              "case, then over held-out cases",
        "best_epoch": trained.best_epoch, "promoted": promoted, "decision": reason,
        "train_seconds": new_card["metrics"].get("train_seconds")}
    card_path.write_text(json.dumps(new_card, indent=2, default=_json_value),
                         encoding="utf-8")
    model_id = project.register_model(path, parent=active.id, active=promoted)
    barrier(group)  # the candidate is registered: the run folder can go
    shutil.rmtree(run_dir, ignore_errors=True)
    result = FinetuneResult(
        "promoted" if promoted else "rejected", active.id, model_id, before, after,
        replay_before, replay_after, reason, info["train"], info["heldout"],
        info["replay"]["train"], trained.history, time.perf_counter() - start, notes)
    if progress is not None:
        progress({"stage": "done", "status": result.status, "model": model_id})
    return result


def score_heldout(segmenter: Any, atlas_images: np.ndarray, mappings: Sequence[AtlasMapping],
                  truths: Sequence[np.ndarray], vouched: Sequence[Sequence[int]],
                  case_ids: Sequence[str], device: torch.device | str = "cpu") -> Score:
    """Native-grid Dice of a segmenter on held-out cases (see the module doc).

    Per case, the mean Dice over its vouched labels (labels absent from both maps skipped);
    the score is the mean over cases; per label, the mean over the cases that vouch for it.
    """
    probs = segmenter.predict_proba(atlas_images, batch_size=4, device=device)
    per_case: dict[str, float] = {}
    per_label: dict[int, list[float]] = {}
    for cid, p, mapping, truth, labels in zip(case_ids, probs, mappings, truths, vouched,
                                               strict=True):
        pred = probabilities_to_native(p, mapping).argmax(0)
        dice = dice_per_label(pred, truth, sorted(labels))
        values = [v for v in dice.values() if not np.isnan(v)]
        per_case[cid] = float(np.mean(values)) if values else float("nan")
        for value, d in dice.items():
            if not np.isnan(d):
                per_label.setdefault(value, []).append(d)
    finite = [v for v in per_case.values() if not np.isnan(v)]
    return Score(float(np.mean(finite)) if finite else float("nan"),
                 {BY_VALUE[k].short: float(np.mean(v)) for k, v in sorted(per_label.items())},
                 per_case)


# --------------------------------------------------------------------------- internals


def _active_model(project: Project, notes: list[str]) -> ModelRow:
    """The active model; the shipped one is registered and activated in an empty registry."""
    active = project.active_model()
    if active is not None:
        return active
    if project.models():
        raise ProjectError(project.root, "no model is active in this project: activate one "
                                         "first (any registered version may be)")
    from ..segment import default_model_path

    model_id = project.register_model(default_model_path(), active=True)
    notes.append(f"registered the shipped model as {model_id} and made it active")
    return project.model(model_id)


def _case_keys(cases: dict[str, TrainingCase]) -> list[list[Any]]:
    return [[cid, tc.version.id, list(tc.labels)] for cid, tc in sorted(cases.items())]


def _prepare_run(project: Project, run_dir: Path, cache: Path, active: ModelRow, model: Any,
                 cases: dict[str, TrainingCase], config: FinetuneConfig, notes: list[str],
                 progress: Progress | None, should_stop: Callable[[], bool] | None) -> bool:
    """Split the cases, send them and the replay slices to atlas space and save it all in
    ``run_dir`` (``run.json`` last); False if stopped."""
    try:
        train_ids, held_ids = split_cases(list(cases), config.holdout_fraction, config.seed)
    except ValueError as err:
        raise ProjectError(project.root, str(err)) from None
    images, labels, masks, sources = [], [], [], []
    mappings: dict[str, dict] = {}
    order = [*train_ids, *held_ids]
    for k, cid in enumerate(order):
        if should_stop is not None and should_stop():
            return False
        tc = cases[cid]
        image = project.read_image(cid)
        truth = trusted_labels(project.read_version(tc.version), tc.labels)
        pre = preprocess_slice(image, model.atlases, tc.case.level or AUTO, model.preprocess)
        images.append(pre.atlas_image)
        labels.append(labels_to_atlas(truth, pre.registration.mapping))
        masks.append(label_mask(tc.labels))
        sources.append(f"project:{cid}")
        if cid in held_ids:
            mappings[cid] = pre.registration.mapping.to_dict()
        if progress is not None:
            progress({"stage": "prepare", "done": k + 1, "total": len(order), "case": cid})
    everything = AtlasSamples(np.stack(images), np.stack(labels), np.stack(masks), sources)
    corrected = everything.subset(range(len(train_ids)))
    val_set = everything.subset(range(len(train_ids), len(order)))

    n_replay = 2 * len(train_ids) if config.replay is None else config.replay
    source = replay_source(active.card)
    if source is None and n_replay + config.replay_check:
        notes.append("no replay: the active model's card does not say how to regenerate its "
                     "training data")
        n_replay, n_check = 0, 0
    else:
        n_check = config.replay_check if source is not None else 0
        if source is not None and not source.exact:
            notes.append(f"replay: {source.contrast} phantoms of seeds "
                         f"{source.first_seed}-{source.last_seed} (the card does not give "
                         "the training seeds)")
    replay_set = check_set = None
    seeds: list[int] = []
    if source is not None and n_replay + n_check:
        seeds = source.seeds(n_replay + n_check, config.replay_seed)
        samples = replay_samples(source, seeds, model, cache, progress, should_stop)
        if samples is None:
            return False
        replay_set = samples.subset(range(n_replay))
        check_set = samples.subset(range(n_replay, n_replay + n_check))
    train_set = corrected if replay_set is None or not len(replay_set) else \
        AtlasSamples.concatenate([corrected, replay_set])

    info = {
        "run_id": uuid.uuid4().hex, "parent": active.id,
        "parent_weights_sha256": active.weights_sha256, "config": config.fingerprint(),
        "cases": _case_keys(cases), "train": train_ids, "heldout": held_ids,
        "mappings": mappings, "notes": list(notes),
        "replay": {"train": n_replay, "check": n_check, "seeds": seeds,
                   "contrast": None if source is None else source.contrast,
                   "exact": None if source is None else source.exact},
    }
    stage = run_dir.with_name(f".{RUN}.{uuid.uuid4().hex}")
    stage.mkdir(parents=True)
    try:
        train_set.save(stage / "train.npz")
        val_set.save(stage / "heldout.npz")
        if check_set is not None:
            check_set.save(stage / "replay_check.npz")
        (stage / RUN_JSON).write_text(json.dumps(info, indent=1), encoding="utf-8")
        os.replace(stage, run_dir)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return True


def _read_run(run_dir: Path) -> tuple[dict, AtlasSamples, AtlasSamples, AtlasSamples | None]:
    """A prepared run as saved: its ``run.json`` and samples (always read from disk, so a
    resumed run trains on exactly the same arrays)."""
    info = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    check = run_dir / "replay_check.npz"
    return (info, AtlasSamples.load(run_dir / "train.npz"),
            AtlasSamples.load(run_dir / "heldout.npz"),
            AtlasSamples.load(check) if check.is_file() else None)


def _load_run(project: Project, run_dir: Path, active: ModelRow,
              cases: dict[str, TrainingCase], config: FinetuneConfig, notes: list[str]
              ) -> tuple[dict, AtlasSamples, AtlasSamples, AtlasSamples | None] | None:
    """The unfinished run to resume, or None when there is none (or it already finished)."""
    path = run_dir / RUN_JSON
    if not path.is_file():
        return None
    info = json.loads(path.read_text(encoding="utf-8"))
    finished = [m.id for m in project.models()
                if (m.card.get("data") or {}).get("finetune", {}).get("run_id")
                == info.get("run_id")]
    if finished:
        notes.append(f"the earlier run had already registered {finished[0]}")
        return None
    problems = []
    if info.get("parent") != active.id:
        problems.append(f"it fine-tunes {info.get('parent')}, but {active.id} is active now")
    if info.get("cases") != json.loads(json.dumps(_case_keys(cases))):
        problems.append("the corrected or verified cases have changed since")
    if info.get("config") != json.loads(json.dumps(config.fingerprint())):
        problems.append("it was started with other settings")
    if problems:
        raise ProjectError(run_dir, "cannot resume the unfinished fine-tuning run: "
                                    + "; ".join(problems) + ". Start afresh without resume.")
    notes.append("resumed the unfinished run")
    return _read_run(run_dir)


def _data_note(info: dict, card: Any) -> dict[str, Any]:
    """What the candidate was trained on, for its card (keeps the replay generator)."""
    note: dict[str, Any] = {
        "finetune": {"run_id": info["run_id"], "parent": info["parent"],
                     "train_cases": info["train"], "heldout_cases": info["heldout"],
                     "label_versions": {c[0]: c[1] for c in info["cases"]},
                     "vouched_labels": {c[0]: c[2] for c in info["cases"]},
                     "replay": info["replay"], "config": info["config"],
                     "notes": info["notes"]}}
    if "generator" in card.data:
        note["generator"] = card.data["generator"]
    return note


def _decide(before: float, after: float, replay_before: float | None,
            replay_after: float | None, config: FinetuneConfig) -> tuple[bool, str]:
    """Promote only a candidate better on the held-out cases that did not forget too much."""
    if not np.isfinite(after) or not after > before + config.min_improvement:
        return False, (f"held-out Dice {after:.4f} does not beat the active model's "
                       f"{before:.4f} by more than {config.min_improvement}")
    if (config.max_forgetting is not None and replay_before is not None
            and replay_after is not None and replay_after < replay_before - config.max_forgetting):
        return False, (f"forgets the original data: Dice {replay_after:.4f} there, "
                       f"{replay_before:.4f} before (allowed drop {config.max_forgetting})")
    return True, f"held-out Dice {after:.4f} beats the active model's {before:.4f}"


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
