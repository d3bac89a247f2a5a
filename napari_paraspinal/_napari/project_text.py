"""What the Project widget shows, as text: summary, worklist and model rows, job progress.

Plain functions (no Qt, no napari) over the project store and the jobs' results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.labels import BY_VALUE
from ..jobs import Progress
from ..project.records import LabelVersion
from ..project.schema import HUMAN_KINDS, LABEL_VALUES, STATUSES
from ..project.store import Project
from .case_drafts import has_draft
from .slices import check_text

if TYPE_CHECKING:  # torch is imported only when fine-tuning starts
    from ..project.batch import BatchResult
    from ..project.finetune import FinetuneResult

#: The training phases, each the stage of its epochs' events (:data:`..nets.trainer.PHASES`).
TRAINING = ("unet", "joint")


@dataclass(frozen=True)
class WorkRow:
    """One worklist line, as text."""

    case_id: str
    status: str
    level: str
    qc: str
    verified: str
    draft: str = ""  # "unsaved draft" when the case has edits kept as a draft
    uncertainty: str = ""  # the last segmentation's score, e.g. "0.123" ("" when none)
    edited: str = ""  # who saved the latest person's version, and when (local time)


@dataclass(frozen=True)
class ModelItem:
    """One registered model, as text."""

    model_id: str
    version: str
    parent: str
    heldout: str
    active: bool


def summary(project: Project) -> str:
    """Case counts per status and the active model, on one line."""
    counts = project.status_counts()
    total = sum(counts.values())
    parts = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    active = project.active_model()
    model = active.id if active is not None else "none (the shipped model is used first)"
    return f"{total} cases{': ' + parts if parts else ''} · active model: {model}"


def worklist(project: Project, status: str | None = None, contains: str = "") -> list[WorkRow]:
    """The cases (of one status, whose id contains ``contains``, ignoring case) as worklist
    rows, in the order they were added."""
    rows = []
    wanted = contains.strip().casefold()
    for case in project.cases(status):
        if wanted not in case.id.casefold():
            continue
        flags = case.qc_flags or {}
        qc = check_text(flags) or ("ok" if flags else "")
        if case.status == "failed" and case.message:
            qc = f"failed: {case.message}"
        verified = case.verified_labels
        rows.append(WorkRow(case.id, case.status, case.level or "", qc,
                            "all" if tuple(verified) == LABEL_VALUES else label_names(verified),
                            "unsaved draft" if has_draft(project, case.id) else "",
                            "" if case.uncertainty is None else f"{case.uncertainty:.3f}",
                            edited_text(project.latest_version(case.id, HUMAN_KINDS))))
    return rows


def edited_text(version: LabelVersion | None) -> str:
    """Who saved a person's version and when, e.g. ``ana 2026-05-04 14:03`` (local time;
    ``?`` for a version saved before authors were recorded)."""
    if version is None:
        return ""
    when = datetime.fromisoformat(version.created_at).astimezone().strftime("%Y-%m-%d %H:%M")
    return f"{version.author or '?'} {when}"


def model_items(project: Project) -> list[ModelItem]:
    """Registered models, oldest first, with their held-out Dice when fine-tuned here."""
    out = []
    for m in project.models():
        metrics = m.card.get("metrics") or {}
        before, after = metrics.get("parent_heldout_dice"), metrics.get("heldout_dice")
        heldout = f"{_dice(before)} → {_dice(after)}" if after is not None else ""
        out.append(ModelItem(m.id, str(m.card.get("version", "")), m.parent or "", heldout,
                             m.active))
    return out


def label_names(values: Iterable[int]) -> str:
    """Short names of label values, e.g. ``MF_L MF_R``."""
    return " ".join(BY_VALUE[v].short for v in values if v in BY_VALUE)


def batch_summary(result: BatchResult) -> str:
    """One line about a batch segmentation."""
    head = "cancelled" if result.cancelled else "done"
    text = f"{head}: {len(result.segmented)} segmented"
    if result.failed:
        text += f", {len(result.failed)} failed ({'; '.join(result.failed)})"
    return text


def finetune_summary(result: FinetuneResult) -> str:
    """One line about a fine-tuning run: decision, held-out Dice before and after."""
    if result.status == "cancelled":
        return f"cancelled: {result.reason}" if result.reason else "cancelled"
    scores = ""
    if result.active is not None and result.candidate is not None:
        scores = (f": held-out Dice {_dice(result.active.mean)} (active {result.parent}) → "
                  f"{_dice(result.candidate.mean)}")
    text = f"{result.status} {result.model_id}{scores}"
    return text if result.promoted else f"{text} — {result.reason}"


def train_step(event: Progress) -> tuple[int, str]:
    """Progress of a fine-tuning event: (done count for the bar, status text)."""
    stage, done = event.stage, event.done
    if stage == "prepare":
        return done, f"preparing case {done}/{event.total}"
    if stage == "replay":
        return done, f"replay slice {done}/{event.total}"
    if stage in TRAINING:
        values = event.values or {}
        loss = values.get("loss")
        loss_text = "" if loss is None or not math.isfinite(loss) else f" loss {loss:.4f},"
        return done, f"{stage} epoch {done}:{loss_text} val Dice {_dice(values.get('val_dice'))}"
    if stage == "validate":
        return 0, f"validating on {event.total} held-out cases"
    if stage == "done":
        return 0, event.message.strip() or "done"
    return 0, stage


def statuses() -> tuple[str, ...]:
    """Case statuses, in the store's order."""
    return STATUSES


def _dice(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value:.3f}" if math.isfinite(value) else "–"
