"""The annotators' worklist: each case's uncertainty score, and which case to work on next.

A segmentation's score is the mean per-pixel uncertainty (1 − the highest class probability,
:func:`..segment.uncertainty`) over the pixels the model calls muscle *or* gives muscle at
least a :data:`MUSCLE_CHANCE` chance. Not the whole image: background far from the spine is
near-certain and its share of the image grows with the field of view, so a whole-image mean
ranks cases by how much air and fat they show. Not only the predicted muscle either: muscle
the model missed but half-believed in is exactly what a person has to add. A slice where the
model sees no muscle at all scores 1.0 (the most uncertain): it needs a person most.

The score is stored with the case when the batch saves its automatic version (``uncertainty``
column, schema 3; NULL for cases not segmented since, which rank after every scored case).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .values import check_choice, now_text

if TYPE_CHECKING:
    from .store import Project

#: A pixel counts towards the score when the model gives muscle at least this probability.
MUSCLE_CHANCE = 0.1
#: Statuses of cases that still need a person: neither corrected nor verified yet.
TODO = ("new", "predicted", "failed")
#: The orders :func:`next_case` knows.
ORDERS = ("order", "uncertainty")


def uncertainty_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """A case's score from its class probabilities (C × H × W, channel 0 background) and the
    labels made from them (H × W): mean uncertainty over the muscle region (module doc)."""
    probs = np.asarray(probabilities, dtype=np.float32)
    region = (np.asarray(labels) > 0) | (probs[0] <= 1.0 - MUSCLE_CHANCE)
    if not region.any():
        return 1.0
    return float((1.0 - probs.max(0))[region].mean())


def set_uncertainty(project: Project, case_id: str, score: float | None) -> None:
    """Store a case's uncertainty score (None clears it)."""
    with project._transaction() as db:
        cur = db.execute("UPDATE cases SET uncertainty = ?, updated_at = ? WHERE id = ?",
                         (None if score is None else float(score), now_text(), case_id))
        if cur.rowcount != 1:
            project.case(case_id)  # raises the store's error for an unknown case


def next_case(project: Project, after: str | None = None, by: str = "order") -> str | None:
    """The next case that still needs work (status in :data:`TODO`), or None when none does.

    ``by="order"``: the first such case after ``after`` in worklist order (the order cases
    were added), wrapping around to the start; ``after`` None starts at the top.
    ``by="uncertainty"``: the most uncertain such case other than ``after`` (unscored cases
    last, in worklist order).
    """
    check_choice("by", by, ORDERS)
    cases = project.cases()
    todo = [c for c in cases if c.status in TODO and c.id != after]
    if not todo:
        return None
    if by == "uncertainty":
        rank = {c.id: k for k, c in enumerate(cases)}
        todo.sort(key=lambda c: (c.uncertainty is None, -(c.uncertainty or 0.0), rank[c.id]))
        return todo[0].id
    ids = [c.id for c in cases]
    start = ids.index(after) + 1 if after in ids else 0
    rotated = ids[start:] + ids[:start]
    wanted = {c.id for c in todo}
    return next(cid for cid in rotated if cid in wanted)

