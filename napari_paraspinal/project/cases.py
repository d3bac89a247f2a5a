"""The project's cases: adding slices of sources as cases, listing them, reading their images
again, and setting their status, QC flags and level.

:meth:`.Project.add`, :meth:`.Project.case`, :meth:`.Project.read_image`,
:meth:`.Project.set_status` and their siblings call these functions, each taking the project
first. Every write is one transaction of the project's (``BEGIN IMMEDIATE`` under its lock,
:meth:`.Project._transaction`). Case ids come from file names (never from DICOM headers) and
are safe as folder names; each case records its source's fingerprint (:mod:`.fingerprint`)
before the source is read.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.errors import InputError
from ..core.geometry import Geometry, SliceImage
from ..core.io import InputRef, expand_inputs, image_stem, list_slices, read_slice, validate_slice
from ..core.names import safe_id
from .claims import check_latest
from .fingerprint import SourceChecker, fingerprint_of
from .records import AddResult, CaseRow, ProjectError, SourceFingerprint
from .schema import STATUSES
from .values import check_choice, json_text, now_text

if TYPE_CHECKING:
    from .store import Project


def add(
    project: Project,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    slices: Sequence[int] | None = None,
    slice_index: int | None = None,
    spacing: tuple[float, float] | None = None,
    level: str | None = None,
) -> AddResult:
    """What :meth:`.Project.add` does."""
    if slice_index is not None:
        slices = [slice_index]
    result = AddResult()
    hashed: dict = {}  # each source hashed once for all its slices
    for raw in inputs:
        try:
            refs = expand_inputs([raw])
        except InputError as err:
            result.failed.append(err)
            continue
        for ref in refs:
            try:
                count = len(list_slices(ref))
                chosen = list(range(count)) if slices is None else list(slices)
                outside = [k for k in chosen if not 0 <= k < count]
                if outside:
                    raise InputError(str(ref), f"has {count} slices (0–{count - 1}); "
                                               f"slice {outside[0]} does not exist")
            except InputError as err:
                result.failed.append(err)
                continue
            for k in chosen:
                try:
                    cid, new, notes = project._add_one(ref, k, spacing, level, count > 1,
                                                       hashed)
                except InputError as err:
                    result.failed.append(err)
                    continue
                (result.added if new else result.existing).append(cid)
                if notes:
                    result.notes[cid] = notes
    return result


def add_one(project: Project, ref: InputRef, index: int,
            spacing: tuple[float, float] | None, level: str | None, stack: bool,
            hashed: dict) -> tuple[str, bool, list[str]]:
    """Add one slice of ``ref`` as a case (one transaction); returns its id, whether it is
    new, and the reader's notes."""
    source = str(ref.path.resolve())
    uid = ref.series_uid or ""
    found = project._find_case(source, uid, index)
    if found is not None:
        return found, False, []
    try:  # before reading: a change after this is caught, never taken as the original
        fp = fingerprint_of(ref, hashed)
    except FileNotFoundError:
        raise InputError(str(ref), "not found: no such file or folder") from None
    image = read_slice(ref, index=index, spacing=spacing)
    validate_slice(image)
    k = int(image.meta.get("slice_index", 0))
    count = int(image.meta.get("slice_count", 1))
    now = now_text()
    with project._transaction() as db:
        found = project._find_case(source, uid, k)
        if found is not None:
            return found, False, []
        cid = project._new_case_id(ref, f"_s{k:03d}" if stack else "")
        db.execute(
            "INSERT INTO cases (id, source, series_uid, slice_index, slice_count, "
            "spacing_json, level, geometry_json, added_at, updated_at, source_size, "
            "source_mtime_ns, source_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, source, uid, k, count, None if spacing is None else json_text(spacing),
             level, json_text(image.geometry.to_dict()), now, now, fp.size, fp.mtime_ns,
             fp.sha256))
        project._log(db, cid, "add", f"{ref} slice {k} of {count}")
    return cid, True, list(image.notes)


def find_case(project: Project, source: str, uid: str, index: int) -> str | None:
    """The id of the case of this source, series and slice, or None."""
    row = project.db.execute("SELECT id FROM cases WHERE source = ? AND series_uid = ? AND "
                             "slice_index = ?", (source, uid, index)).fetchone()
    return None if row is None else row[0]


def new_case_id(project: Project, ref: InputRef, suffix: str = "") -> str:
    """What :meth:`.Project._new_case_id` does."""
    taken = {r[0].casefold() for r in project.db.execute("SELECT id FROM cases")}
    base = safe_id(image_stem(ref.path)) + suffix  # the rule ``paraspinal run`` uses
    cid, n = base, 2
    while cid.casefold() in taken:
        cid, n = f"{base}_{n}", n + 1
    return cid


def case(project: Project, case_id: str) -> CaseRow:
    """One case by id."""
    row = project.db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
    if row is None:
        raise ProjectError(project.root, f"no case {case_id!r} in this project")
    return project._case_row(row)


def cases(project: Project, status: str | None = None) -> list[CaseRow]:
    """All cases in the order they were added, or those with one status."""
    if status is not None:
        check_choice("status", status, STATUSES)
        rows = project.db.execute("SELECT * FROM cases WHERE status = ? ORDER BY rowid",
                                  (status,))
    else:
        rows = project.db.execute("SELECT * FROM cases ORDER BY rowid")
    return [project._case_row(r) for r in rows.fetchall()]


def status_counts(project: Project) -> dict[str, int]:
    """Number of cases in each status (every status listed, zeros included)."""
    counts = dict.fromkeys(STATUSES, 0)
    for r in project.db.execute("SELECT status, count(*) FROM cases GROUP BY status"):
        counts[r[0]] = int(r[1])
    return counts


def read_image(project: Project, case_id: str,
               sources: SourceChecker | None = None) -> SliceImage:
    """What :meth:`.Project.read_image` does."""
    case = project.case(case_id)
    checker = sources if sources is not None else project._sources
    try:
        image = read_slice(case.ref, index=case.slice_index, spacing=case.spacing)
    except InputError:
        checker.require(case)  # "changed since added" says more than a read error
        raise
    checker.require(case)
    if not image.geometry.same_grid(case.geometry):
        raise InputError(str(case.ref), "the source has changed since it was added: the "
                                        "slice no longer lies on the case's grid")
    return image


def set_status(project: Project, case_id: str, status: str, message: str = "",
               expect_version: int | None = None) -> None:
    """What :meth:`.Project.set_status` does."""
    check_choice("status", status, STATUSES)
    with project._transaction() as db:
        project.case(case_id)
        if expect_version is not None:
            check_latest(db, project.root, case_id, expect_version, None)
        expected = project._derived_status(db, case_id)
        if status not in ("failed", expected):
            raise ProjectError(project.root, f"case {case_id!r} cannot be {status!r}: its "
                                             f"labels make it {expected!r}")
        db.execute("UPDATE cases SET status = ?, message = ?, updated_at = ? WHERE id = ?",
                   (status, message, now_text(), case_id))
        project._log(db, case_id, "status", f"{status}: {message}" if message else status)


def set_qc(project: Project, case_id: str, flags: Mapping[str, Any]) -> None:
    """Replace a case's QC flags (any JSON-friendly mapping)."""
    text = json_text(dict(flags))
    with project._transaction() as db:
        project.case(case_id)
        db.execute("UPDATE cases SET qc_flags_json = ?, updated_at = ? WHERE id = ?",
                   (text, now_text(), case_id))
        project._log(db, case_id, "qc", text)


def set_level(project: Project, case_id: str, level: str | None) -> None:
    """Record the case's spinal level (e.g. detected at prediction)."""
    with project._transaction() as db:
        project.case(case_id)
        db.execute("UPDATE cases SET level = ?, updated_at = ? WHERE id = ?",
                   (level, now_text(), case_id))
        project._log(db, case_id, "level", str(level))


def case_row(d: sqlite3.Row) -> CaseRow:
    """A ``cases`` row as a :class:`.CaseRow`."""
    spacing = json.loads(d["spacing_json"]) if d["spacing_json"] else None
    return CaseRow(
        id=d["id"], source=d["source"], series_uid=d["series_uid"] or None,
        slice_index=d["slice_index"], slice_count=d["slice_count"],
        spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        level=d["level"], geometry=Geometry.from_dict(json.loads(d["geometry_json"])),
        status=d["status"], message=d["message"], qc_flags=json.loads(d["qc_flags_json"]),
        verified_labels=json.loads(d["verified_labels_json"]), added_at=d["added_at"],
        updated_at=d["updated_at"], fingerprint=None if d["source_sha256"] is None else
        SourceFingerprint(d["source_size"], d["source_mtime_ns"], d["source_sha256"]),
        uncertainty=d["uncertainty"])
