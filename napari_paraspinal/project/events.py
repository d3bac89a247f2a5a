"""A project's event log: one row per action (add, save, status, register_model, repair, ...),
written inside the action's own transaction and read back oldest first.

:meth:`.Project._log` and :meth:`.Project.history` call these functions.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from .values import now_text

if TYPE_CHECKING:
    from .store import Project


def log(db: sqlite3.Connection, case_id: str | None, action: str, detail: str = "") -> None:
    """Record an event on ``db``, inside the caller's transaction."""
    db.execute("INSERT INTO events (at, case_id, action, detail) VALUES (?, ?, ?, ?)",
               (now_text(), case_id, action, detail))


def history(project: Project, case_id: str | None = None
            ) -> list[tuple[str, str | None, str, str]]:
    """The event log (time, case, action, detail), oldest first."""
    sql = "SELECT at, case_id, action, detail FROM events"
    rows = (project.db.execute(sql + " ORDER BY id") if case_id is None else
            project.db.execute(sql + " WHERE case_id = ? ORDER BY id", (case_id,)))
    return [tuple(r) for r in rows]
