"""How much work a case took a person: pixels changed from the model's labels, time open.

Edit effort compares the case's latest label version, when a person made it (corrected or
verified), with the newest automatic version before it: the count of pixels whose label
differs, and that count in mm² on the case's grid. A case with no automatic version before
the person's (drawn from scratch), no person's version yet, or a label file that no longer
matches its hash has no edit effort (None), not zero: there is nothing sound to compare.

Time open is what the napari Project widget records each time a case is closed or another is
opened (:func:`record_open_time`, an ``open_time`` event with the seconds as its detail);
``seconds_open`` sums them, so a case opened three times counts all three.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..core.errors import InputError
from .schema import HUMAN_KINDS

if TYPE_CHECKING:
    from .store import Project

#: The event action of a case's time open in the GUI.
OPEN_TIME = "open_time"


@dataclass(frozen=True)
class Effort:
    """A case's edit effort (None: nothing to compare) and its total seconds open."""

    edit_pixels: int | None
    edit_mm2: float | None
    seconds_open: float

    def columns(self) -> dict[str, object]:
        """The export's columns (blank where there is nothing to compare)."""
        return {"edit_pixels": "" if self.edit_pixels is None else self.edit_pixels,
                "edit_mm2": "" if self.edit_mm2 is None else round(self.edit_mm2, 2),
                "seconds_open": round(self.seconds_open, 1)}


def record_open_time(project: Project, case_id: str, seconds: float) -> None:
    """Log that ``case_id`` was open in the GUI for ``seconds`` (finite, not negative)."""
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds open must be a finite number ≥ 0; got {seconds!r}")
    project.case(case_id)  # an unknown case is the store's error, not a stray event
    with project._transaction() as db:
        project._log(db, case_id, OPEN_TIME, f"{seconds:.3f}")


def seconds_open(project: Project, case_id: str) -> float:
    """The case's recorded seconds open in the GUI, summed."""
    rows = project.db.execute("SELECT detail FROM events WHERE case_id = ? AND action = ?",
                              (case_id, OPEN_TIME)).fetchall()
    return sum(float(r[0]) for r in rows)


def edit_pixels(project: Project, case_id: str) -> tuple[int, float] | None:
    """Pixels (count, mm²) that differ between the latest person's version and the newest
    automatic one before it; None when there is no such pair (module doc)."""
    versions = project.label_versions(case_id)
    if not versions or versions[-1].kind not in HUMAN_KINDS:
        return None
    auto = [v for v in versions if v.kind == "automatic"]
    if not auto:
        return None
    try:
        person = project.read_version(versions[-1])
        model = project.read_version(auto[-1])
    except InputError:  # a damaged file: no effort to report (`project check` names it)
        return None
    count = int(np.count_nonzero(person != model))
    return count, count * project.case(case_id).geometry.pixel_area_mm2


def effort(project: Project, case_id: str) -> Effort:
    """A case's edit effort and time open."""
    edited = edit_pixels(project, case_id)
    return Effort(None if edited is None else edited[0], None if edited is None else edited[1],
                  seconds_open(project, case_id))
