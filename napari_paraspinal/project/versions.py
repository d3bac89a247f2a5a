"""A project's label versions: saving a new one, reading them back, and the status and verified
labels a case's versions make.

:meth:`.Project.save_labels`, :meth:`.Project.label_versions`, :meth:`.Project.latest_labels`
and their siblings call these functions, each taking the project first. A label map is
written to a fresh staging file first, then, inside one transaction, hard-linked to its final
name (which fails if the name exists) and recorded; on any failure a placed file no row
points to is removed again (see :mod:`.store` for why this order is safe). Version numbers
skip past orphan files, so no file name is ever reused. A label map is only handed out while
its file still matches the SHA-256 recorded when it was saved.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.atomic import sha256_of
from ..core.io import read_labels
from ..core.writers import write_labels
from .claims import check_latest
from .placing import STAGE
from .records import LabelVersion, ProjectError, TrainingCase
from .schema import HUMAN_KINDS, KINDS, LABELS_DIR, STATUS_OF_KIND
from .values import (
    check_choice,
    json_text,
    label_array,
    labelled_values,
    now_text,
    os_user,
    verified_of,
)
from .vouch import absent_note, empty_map_problem

if TYPE_CHECKING:
    from .store import Project

_VERSION_FILE = re.compile(r"^v(\d+)_[a-z]+\.nii\.gz$")


def save_labels(project: Project, case_id: str, labels: np.ndarray, kind: str,
                labelled: Iterable[int] | None, model_id: str | None,
                expect_version: int | None, *, place: Callable[[Path, Path], None],
                sha256_file: Callable[[Path], str]) -> LabelVersion:
    """What :meth:`.Project.save_labels` does. ``place`` and ``sha256_file`` are
    :mod:`.store`'s ``place_new`` and ``sha256_of``, passed by the method as they are at
    each call, so a test that replaces them there stops a save between its steps."""
    check_choice("kind", kind, KINDS)
    marks = labelled_values(labelled, kind)
    data = label_array(labels)
    case = project.case(case_id)
    if kind in HUMAN_KINDS and (problem := empty_map_problem(data, kind, marks)):
        raise ProjectError(project.root, f"case {case.id}: {problem}")
    absent = absent_note(data, marks) if kind in HUMAN_KINDS else None
    if model_id is not None and project.db.execute(
            "SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
        raise ProjectError(project.root, f"model {model_id!r} is not registered in this "
                                         "project (register_model it first)")
    folder = project.root / LABELS_DIR / case.id
    folder.mkdir(parents=True, exist_ok=True)
    stage = folder / f"{STAGE}{uuid.uuid4().hex}.nii.gz"
    placed: Path | None = None
    try:
        write_labels(data, case.geometry, stage)
        digest = sha256_file(stage)
        with project._transaction() as db:
            check_latest(db, project.root, case.id, expect_version, kind)
            version = project._next_version(db, case.id, folder)
            rel = f"{LABELS_DIR}/{case.id}/v{version:03d}_{kind}.nii.gz"
            place(stage, project.root / rel)
            placed = project.root / rel
            cur = db.execute(
                "INSERT INTO label_versions (case_id, version, kind, path, sha256, "
                "labelled_json, model_id, created_at, author) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (case.id, version, kind, rel, digest, json_text(marks), model_id, now_text(),
                 os_user()))
            row_id = int(cur.lastrowid)
            db.execute(
                "UPDATE cases SET status = ?, message = '', verified_labels_json = ?, "
                "updated_at = ? WHERE id = ?",
                (STATUS_OF_KIND[kind], json_text(project._derived_verified(db, case.id)),
                 now_text(), case.id))
            project._log(db, case.id, "save", f"v{version} {kind} labels {marks}"
                         + (f"; {absent}" if absent else ""))
    except BaseException:
        if placed is not None and not project._recorded(placed):
            with contextlib.suppress(OSError):
                placed.unlink()
        raise
    finally:
        stage.unlink(missing_ok=True)
    return project._version_by_id(row_id)


def next_version(db: sqlite3.Connection, case_id: str, folder: Path) -> int:
    """One past the highest version in the database or on disk (orphans included)."""
    highest = db.execute("SELECT coalesce(max(version), 0) FROM label_versions "
                         "WHERE case_id = ?", (case_id,)).fetchone()[0]
    for p in folder.iterdir():
        m = _VERSION_FILE.match(p.name)
        if m:
            highest = max(highest, int(m.group(1)))
    return int(highest) + 1


def recorded(project: Project, path: Path) -> bool:
    """Whether a row points to ``path`` (True when the database cannot say)."""
    rel = path.relative_to(project.root).as_posix()
    try:
        return project.db.execute("SELECT 1 FROM label_versions WHERE path = ?",
                                  (rel,)).fetchone() is not None
    except sqlite3.Error:
        return True


def label_versions(project: Project, case_id: str) -> list[LabelVersion]:
    """Every label version of a case, oldest first."""
    project.case(case_id)
    rows = project.db.execute("SELECT * FROM label_versions WHERE case_id = ? ORDER BY "
                              "version", (case_id,)).fetchall()
    return [project._version_row(r) for r in rows]


def latest_version(project: Project, case_id: str, kinds: Sequence[str] | None = None
                   ) -> LabelVersion | None:
    """The newest label version of a case (of the given kinds), or None."""
    versions = project.label_versions(case_id)
    if isinstance(kinds, str):
        kinds = (kinds,)
    if kinds is not None:
        for kind in kinds:
            check_choice("kind", kind, KINDS)
        versions = [v for v in versions if v.kind in kinds]
    return versions[-1] if versions else None


def latest_labels(project: Project, case_id: str, kinds: Sequence[str] | None = None
                  ) -> tuple[np.ndarray, LabelVersion]:
    """What :meth:`.Project.latest_labels` does."""
    version = project.latest_version(case_id, kinds)
    if version is None:
        which = f" of kind {kinds if isinstance(kinds, str) else ', '.join(kinds)}" \
            if kinds else ""
        raise ProjectError(project.root, f"case {case_id!r} has no labels{which}")
    return project.read_version(version), version


def read_version(project: Project, version: LabelVersion) -> np.ndarray:
    """The label map of one version, checked against its SHA-256 and the case's grid."""
    if not version.path.is_file():
        raise ProjectError(version.path, "label file is missing from the project")
    if sha256_of(version.path) != version.sha256:
        raise ProjectError(version.path, "label file has changed since it was saved "
                                         "(SHA-256 differs)")
    return read_labels(version.path, project.case(version.case_id).geometry)


def training_cases(project: Project) -> list[TrainingCase]:
    """Cases whose latest label version was made by a person, with trusted labels."""
    out = []
    for case in project.cases():
        if case.status == "failed":
            continue
        version = project.latest_version(case.id)
        if version is not None and version.kind in HUMAN_KINDS:
            out.append(TrainingCase(case, version, list(case.verified_labels)))
    return out


def version_kinds(db: sqlite3.Connection, case_id: str) -> list[tuple[str, list[int]]]:
    """Each version's kind and vouched labels, oldest first (read on ``db``, inside the
    caller's transaction)."""
    rows = db.execute("SELECT kind, labelled_json FROM label_versions WHERE case_id = ? "
                      "ORDER BY version", (case_id,)).fetchall()
    return [(r[0], json.loads(r[1])) for r in rows]


def derived_status(project: Project, db: sqlite3.Connection, case_id: str) -> str:
    """The status the case's latest version makes it (``new`` without any)."""
    kinds = project._kinds(db, case_id)
    return STATUS_OF_KIND[kinds[-1][0]] if kinds else "new"


def derived_verified(project: Project, db: sqlite3.Connection, case_id: str) -> list[int]:
    """The labels the case's latest run of a person's versions vouches for."""
    return verified_of(project._kinds(db, case_id))


def version_row(project: Project, d: sqlite3.Row) -> LabelVersion:
    """A ``label_versions`` row as a :class:`.LabelVersion`."""
    return LabelVersion(
        id=d["id"], case_id=d["case_id"], version=d["version"], kind=d["kind"],
        relpath=d["path"], path=project.root / d["path"], sha256=d["sha256"],
        labelled=json.loads(d["labelled_json"]), model_id=d["model_id"],
        created_at=d["created_at"], author=d["author"])


def version_by_id(project: Project, row_id: int) -> LabelVersion:
    """One label version by its row id."""
    row = project.db.execute("SELECT * FROM label_versions WHERE id = ?",
                             (row_id,)).fetchone()
    return project._version_row(row)
