"""Measurement rows stored in a project, each made on one label version of a case.

:meth:`.Project.save_measurements` and :meth:`.Project.measurements` call these functions,
each taking the project first. A row is stored in one transaction of the project's, which
first checks that the label version belongs to the case.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .records import MeasurementRow, ProjectError
from .values import json_text, now_text

if TYPE_CHECKING:
    from .store import Project


def save_measurements(project: Project, case_id: str, label_version_id: int,
                      row: Mapping[str, Any]) -> int:
    """Store a measurement row made on one label version of the case; returns its id."""
    text = json_text(dict(row))
    with project._transaction() as db:
        found = db.execute("SELECT case_id FROM label_versions WHERE id = ?",
                           (label_version_id,)).fetchone()
        if found is None or found[0] != case_id:
            raise ProjectError(project.root, f"label version {label_version_id} is not a "
                                             f"version of case {case_id!r}")
        cur = db.execute("INSERT INTO measurements (case_id, label_version_id, row_json, "
                         "created_at) VALUES (?, ?, ?, ?)",
                         (case_id, label_version_id, text, now_text()))
        project._log(db, case_id, "measure", f"label version id {label_version_id}")
    return int(cur.lastrowid)


def measurements(project: Project, case_id: str | None = None) -> list[MeasurementRow]:
    """Stored measurement rows (of one case), oldest first."""
    sql = "SELECT id, case_id, label_version_id, row_json, created_at FROM measurements"
    rows = (project.db.execute(sql + " ORDER BY id") if case_id is None else
            project.db.execute(sql + " WHERE case_id = ? ORDER BY id", (case_id,)))
    return [MeasurementRow(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]
