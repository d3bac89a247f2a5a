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

import json
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.config import config_from_dict
from ..jobs import Cancel, ProgressFn, report
from ..nets.bundle import load_card
from ..nets.checkpoint import find_checkpoint
from ..nets.distributed import barrier, group_from_env
from ..nets.fit import evaluate_samples, fit_bundle
from ..nets.segmenter import SegmenterConfig, resolve_device
from ..nets.train import CHECKPOINT
from ..preprocess.atlas_space import AtlasMapping
from .finetune_config import FinetuneConfig
from .finetune_data import (
    CANDIDATE,
    FINETUNE_DIR,
    REPLAY_CACHE,
    RUN,
    load_run,
    prepare_run,
    read_run,
    trusted_labels,
)
from .finetune_validation import Score, decide, score_heldout
from .records import ModelRow, ProjectError
from .store import Project


@dataclass
class FinetuneResult:
    """What a run did.

    ``status``: ``promoted``, ``rejected`` or ``cancelled`` (``trained`` for a process of a
    ``torchrun`` group other than the first, which alone validates); ``parent``: the model active
    when the run started; ``model_id``: the registered candidate (None when cancelled);
    ``active`` / ``candidate``: their held-out scores; ``replay_*``: their Dice on the
    ``replay_check`` slices; ``reason``: why it was (not) promoted; ``replay``: replay slices
    trained on; ``history``: the training epochs (:class:`..nets.trainer.TrainResult`'s).
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


def finetune_project(project: Project, config: FinetuneConfig | None = None,
                     progress: ProgressFn | None = None,
                     cancel: Cancel | None = None,
                     resume: bool = False) -> FinetuneResult:
    """Train a candidate from the active model, validate it, register it, maybe promote it.

    Without an active model (an empty registry) the shipped model is registered first and
    made active. ``progress`` receives :class:`..jobs.Progress` events of the stages
    ``prepare`` (one per case), ``replay``, ``unet`` and ``joint`` (one per epoch, its loss
    and validation Dice in ``values``: :func:`..nets.trainer.epoch_event`), ``validate`` and
    ``done``. ``cancel`` is checked between cases and between training
    batches: once set, the run stops, registering nothing and keeping what is needed to
    resume. ``resume=True`` continues the unfinished run of this project if there is one
    (same cases, active model and settings), else starts one; ``resume=False`` discards an
    unfinished run and starts afresh.
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
        run = load_run(project, run_dir, active, cases, config, notes) if resume else None
        if run is None and run_dir.exists():
            shutil.rmtree(run_dir)
            notes.append("discarded an unfinished earlier run")
        model = load_model(active.path, device="cpu")
        if run is None:
            if not prepare_run(project, run_dir, root / REPLAY_CACHE, active, model, cases,
                               config, notes, progress, cancel):
                return FinetuneResult("cancelled", active.id, reason="cancelled while "
                                      "preparing", seconds=time.perf_counter() - start,
                                      notes=notes)
            run = read_run(run_dir)
        if (run_dir / CANDIDATE).exists():
            shutil.rmtree(run_dir / CANDIDATE)
        barrier(group)
    else:  # the others train their part of every batch on the run the first one prepared
        barrier(group)
        active = _active_model(project, notes)
        cases = {tc.case.id: tc for tc in project.training_cases()}
        model = load_model(active.path, device="cpu")
        run = read_run(run_dir)
    info, train_set, val_set, check_set = run
    notes.extend(n for n in info["notes"] if n not in notes)
    candidate_dir = run_dir / CANDIDATE
    card = load_card(active.path)
    resuming = find_checkpoint(run_dir / CHECKPOINT) is not None
    path, trained = fit_bundle(
        candidate_dir, train_set, val_set, active.path / "atlases", card.name,
        config_from_dict(SegmenterConfig, card.network), config.train_config(card.training),
        model.preprocess,
        parent=active.id, data_note=_data_note(info, card),
        progress=progress, cancel=cancel,
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

    report(progress, "validate", 0, len(info["heldout"]),
           message=f"validating on {len(info['heldout'])} held-out cases")
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
    promoted, reason = decide(before.mean, after.mean, replay_before, replay_after, config)

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
    report(progress, "done", 1, 1, message=f"{result.status} {model_id}")
    return result


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


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
