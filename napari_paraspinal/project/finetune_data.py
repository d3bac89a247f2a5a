"""The data of a fine-tuning run (:mod:`.finetune`), prepared once and kept on disk.

The corrected and verified cases are split into training and held-out cases
(:func:`split_cases`), their labels cut to those vouched for (:func:`trusted_labels`), and
they and the replay slices are sent to atlas space and saved in the run folder
(:func:`prepare_run`). A resumed run reads the same arrays back (:func:`read_run`) after
checking that cases, active model and settings are unchanged (:func:`load_run`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.labels import label_mask
from ..jobs import Cancel, ProgressFn, cancelled, report
from ..nets.samples import AtlasSamples
from ..preprocess.atlas_space import labels_to_atlas
from ..preprocess.chain import AUTO, preprocess_slice
from .finetune_config import FinetuneConfig
from .records import ModelRow, ProjectError, TrainingCase
from .replay import replay_samples, replay_source
from .store import Project

#: Folder of the project holding fine-tuning runs and the replay cache.
FINETUNE_DIR = "finetune"
RUN = "run"
RUN_JSON = "run.json"
CANDIDATE = "candidate"
REPLAY_CACHE = "replay"


def trusted_labels(labels: np.ndarray, verified: Iterable[int]) -> np.ndarray:
    """The label map with every value not vouched for set to 0 (uint8)."""
    keep = np.zeros(256, np.uint8)
    for value in verified:
        keep[int(value)] = int(value)
    return keep[np.asarray(labels).astype(np.uint8)]


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


def _case_keys(cases: dict[str, TrainingCase]) -> list[list[Any]]:
    return [[cid, tc.version.id, list(tc.labels)] for cid, tc in sorted(cases.items())]


def prepare_run(project: Project, run_dir: Path, cache: Path, active: ModelRow, model: Any,
                cases: dict[str, TrainingCase], config: FinetuneConfig, notes: list[str],
                progress: ProgressFn | None, cancel: Cancel | None) -> bool:
    """Split the cases, send them and the replay slices to atlas space and save it all in
    ``run_dir`` (``run.json`` last); False if cancelled. Progress: stage ``prepare``, one
    step per case, then the replay's (:func:`.replay.replay_samples`)."""
    try:
        train_ids, held_ids = split_cases(list(cases), config.holdout_fraction, config.seed)
    except ValueError as err:
        raise ProjectError(project.root, str(err)) from None
    images, labels, masks, sources = [], [], [], []
    mappings: dict[str, dict] = {}
    order = [*train_ids, *held_ids]
    for k, cid in enumerate(order):
        if cancelled(cancel):
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
        report(progress, "prepare", k + 1, len(order), cid,
               f"preparing case {k + 1}/{len(order)}")
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
        samples = replay_samples(source, seeds, model, cache, progress, cancel)
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


def read_run(run_dir: Path) -> tuple[dict, AtlasSamples, AtlasSamples, AtlasSamples | None]:
    """A prepared run as saved: its ``run.json`` and samples (always read from disk, so a
    resumed run trains on exactly the same arrays)."""
    info = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    check = run_dir / "replay_check.npz"
    return (info, AtlasSamples.load(run_dir / "train.npz"),
            AtlasSamples.load(run_dir / "heldout.npz"),
            AtlasSamples.load(check) if check.is_file() else None)


def load_run(project: Project, run_dir: Path, active: ModelRow,
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
    return read_run(run_dir)
