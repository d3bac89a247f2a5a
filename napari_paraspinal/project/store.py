"""The project store: a folder with an SQLite database and the files it points to.

A project keeps everything the correct-and-fine-tune loop needs: its cases (source file,
slice, level, geometry), every version of their label maps (automatic, each saved
correction, verified) with the labels each author vouched for, status, QC flags,
measurements, and a registry of models with one active model::

    project/
      project.sqlite             the database (WAL journal)
      labels/<case>/v001_automatic.nii.gz, v002_corrected.nii.gz, ...
      models/<model id>/         bundles: weights.safetensors, card.json, ...
      orphans/                   files ``repair()`` set aside (never deleted)

Why it is built this way:

- Every multi-statement write is one ``BEGIN IMMEDIATE`` transaction, so a run killed at
  any moment leaves the database as it was before or after a whole step.
- A label map is written to a fresh staging file first, then, inside the transaction,
  hard-linked to its final name (which fails if the name exists) and recorded. Label
  versions are never overwritten: their files are only ever created, and triggers refuse
  to update or delete their rows. A run killed between placing the file and committing
  leaves an orphan file, which is harmless; :meth:`Project.check` reports orphans and any
  row whose file is missing or differs from its SHA-256, and :meth:`Project.repair` sets
  orphans aside. Version numbers skip past orphans, so no file is ever reused.
- Model bundles are copied to a staging folder, checked there as a loader checks them
  (card schema, every file's SHA-256 required and matching, safetensors weights; see
  :mod:`.models`) and renamed into place; nothing is ever unpickled.
- Case ids come from file names (never from DICOM headers) and are safe as folder names.
- Each case records its source's fingerprint (size, mtime, SHA-256; :mod:`.fingerprint`),
  so a source changed or gone since is reported, not measured, nor read for a person.
  Batch workers claim cases and save automatic versions by compare-and-set
  (:mod:`.claims`), so concurrent runs split the cases; an automatic version is never
  saved over a person's (corrected or verified) one, by any caller.
- Older projects are upgraded on open (:func:`.schema.upgrade`, one transaction).

The schema and the names of folders, files and states are in :mod:`.schema`; the rows and
reports handed out are in :mod:`.records`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import fsync_path, sha256_of
from ..core.errors import InputError
from ..core.geometry import Geometry, SliceImage
from ..core.io import (
    InputRef,
    expand_inputs,
    image_stem,
    list_slices,
    read_labels,
    read_slice,
    validate_slice,
)
from ..core.names import safe_id
from ..core.writers import write_labels
from .claims import check_latest
from .fingerprint import SourceChecker, fingerprint_of
from .records import (
    AddResult,
    CaseRow,
    CheckReport,
    LabelVersion,
    MeasurementRow,
    ModelRow,
    ProjectError,
    SourceFingerprint,
    TrainingCase,
)
from .schema import (
    APPLICATION,
    DB_NAME,
    HUMAN_KINDS,
    KINDS,
    LABEL_VALUES,
    LABELS_DIR,
    MODELS_DIR,
    SCHEMA,
    SCHEMA_VERSION,
    STATUS_OF_KIND,
    STATUSES,
    upgrade,
)
from .vouch import absent_note, empty_map_problem

_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_VERSION_FILE = re.compile(r"^v(\d+)_[a-z]+\.nii\.gz$")
_STAGE = ".stage-"


# --------------------------------------------------------------------------- project


class Project:
    """A project folder opened for reading and writing (use :meth:`init` or :meth:`open`)."""

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root = root
        self.db = db
        self._lock = threading.RLock()
        self._sources = SourceChecker(full=True)  # read_image's source hashes, by file state

    # ----------------------------------------------------------------- open, create, close

    @classmethod
    def init(cls, folder: str | os.PathLike[str]) -> Project:
        """Create a project in ``folder`` (made if needed); an existing project is refused.

        The database is built under a temporary name and linked into place last, so an
        interrupted ``init`` never leaves a half-made project.
        """
        root = Path(folder).absolute()
        if (root / DB_NAME).exists():
            raise ProjectError(root, "a project already exists here")
        if root.exists() and not root.is_dir():
            raise ProjectError(root, "exists and is not a folder")
        root.mkdir(parents=True, exist_ok=True)
        (root / LABELS_DIR).mkdir(exist_ok=True)
        (root / MODELS_DIR).mkdir(exist_ok=True)
        tmp = root / f"{_STAGE}{uuid.uuid4().hex}.sqlite"
        try:
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript("BEGIN;" + SCHEMA)
                now = _now()
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                    ("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)),
                    ("created_at", now)])
                db.execute("INSERT INTO events (at, action, detail) VALUES (?, 'init', ?)",
                           (now, str(root)))
                db.execute("COMMIT")
            finally:
                db.close()
            try:
                _place_new(tmp, root / DB_NAME)
            except FileExistsError:
                raise ProjectError(root, "a project already exists here") from None
        finally:
            tmp.unlink(missing_ok=True)
        return cls.open(root)

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> Project:
        """Open an existing project; anything else is a clear error."""
        root = Path(folder).absolute()
        path = root / DB_NAME
        if not path.is_file():
            raise ProjectError(root, f"not a napari-paraspinal project (no {DB_NAME}); "
                                     "create one with `paraspinal project init`")
        try:
            db = sqlite3.connect(f"{path.as_uri()}?mode=rw", uri=True, isolation_level=None,
                                 timeout=30.0, check_same_thread=False)
        except sqlite3.Error as err:
            raise ProjectError(path, f"cannot open the project database ({err})") from None
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys=ON")
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            db.execute("PRAGMA synchronous=FULL")
            meta = {r[0]: r[1] for r in db.execute("SELECT key, value FROM meta")}
        except sqlite3.Error as err:
            db.close()
            raise ProjectError(path, f"not a project database ({err})") from None
        if meta.get("application") != APPLICATION:
            db.close()
            raise ProjectError(path, "not a napari-paraspinal project database")
        version = int(meta.get("schema_version", "0"))
        if version > SCHEMA_VERSION:
            db.close()
            raise ProjectError(path, f"made by a newer napari-paraspinal (schema {version}, "
                                     f"this one reads {SCHEMA_VERSION}); please update")
        if str(mode).lower() != "wal":
            db.close()
            raise ProjectError(path, f"cannot use the WAL journal here (got {mode!r})")
        if version < SCHEMA_VERSION:
            try:
                upgrade(db)
            except sqlite3.Error as err:
                db.close()
                raise ProjectError(path, f"cannot upgrade the project database ({err})") \
                    from None
        return cls(root, db)

    @staticmethod
    def is_project(folder: str | os.PathLike[str]) -> bool:
        """True when ``folder`` holds a project database."""
        return (Path(folder) / DB_NAME).is_file()

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back into it)."""
        self.db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"

    # ----------------------------------------------------------------- cases

    def add(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        *,
        slices: Sequence[int] | None = None,
        slice_index: int | None = None,
        spacing: tuple[float, float] | None = None,
        level: str | None = None,
    ) -> AddResult:
        """Add files and folders (each DICOM series in a folder is one input), a case per
        slice: every slice of a 3-D input, or the ``slices`` chosen (``slice_index``: one).

        Each slice is read and checked before it is added, one transaction per case.
        Adding the same source and slice again is a no-op reporting the existing id. A bad
        input or slice is collected as an :class:`InputError` naming it and leaves the
        project unchanged; the others are still added.
        """
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
                        cid, new, notes = self._add_one(ref, k, spacing, level, count > 1,
                                                        hashed)
                    except InputError as err:
                        result.failed.append(err)
                        continue
                    (result.added if new else result.existing).append(cid)
                    if notes:
                        result.notes[cid] = notes
        return result

    def _add_one(self, ref: InputRef, index: int, spacing: tuple[float, float] | None,
                 level: str | None, stack: bool, hashed: dict) -> tuple[str, bool, list[str]]:
        source = str(ref.path.resolve())
        uid = ref.series_uid or ""
        found = self._find_case(source, uid, index)
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
        now = _now()
        with self._transaction() as db:
            found = self._find_case(source, uid, k)
            if found is not None:
                return found, False, []
            cid = self._new_case_id(ref, f"_s{k:03d}" if stack else "")
            db.execute(
                "INSERT INTO cases (id, source, series_uid, slice_index, slice_count, "
                "spacing_json, level, geometry_json, added_at, updated_at, source_size, "
                "source_mtime_ns, source_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, source, uid, k, count, None if spacing is None else _dumps(spacing),
                 level, _dumps(image.geometry.to_dict()), now, now, fp.size, fp.mtime_ns,
                 fp.sha256))
            self._log(db, cid, "add", f"{ref} slice {k} of {count}")
        return cid, True, list(image.notes)

    def _find_case(self, source: str, uid: str, index: int) -> str | None:
        row = self.db.execute("SELECT id FROM cases WHERE source = ? AND series_uid = ? AND "
                              "slice_index = ?", (source, uid, index)).fetchone()
        return None if row is None else row[0]

    def _new_case_id(self, ref: InputRef, suffix: str = "") -> str:
        """The file name made safe as ``paraspinal run`` makes it (:func:`.core.names.safe_id`),
        with ``_sNNN`` for a stack's slice, unique ignoring case."""
        taken = {r[0].casefold() for r in self.db.execute("SELECT id FROM cases")}
        base = safe_id(image_stem(ref.path)) + suffix  # the rule ``paraspinal run`` uses
        cid, n = base, 2
        while cid.casefold() in taken:
            cid, n = f"{base}_{n}", n + 1
        return cid

    def case(self, case_id: str) -> CaseRow:
        """One case by id."""
        row = self.db.execute("SELECT * FROM cases WHERE id = ?", (case_id,)).fetchone()
        if row is None:
            raise ProjectError(self.root, f"no case {case_id!r} in this project")
        return self._case_row(row)

    def cases(self, status: str | None = None) -> list[CaseRow]:
        """All cases in the order they were added, or those with one status."""
        if status is not None:
            _check_choice("status", status, STATUSES)
            rows = self.db.execute("SELECT * FROM cases WHERE status = ? ORDER BY rowid",
                                   (status,))
        else:
            rows = self.db.execute("SELECT * FROM cases ORDER BY rowid")
        return [self._case_row(r) for r in rows.fetchall()]

    def status_counts(self) -> dict[str, int]:
        """Number of cases in each status (every status listed, zeros included)."""
        counts = dict.fromkeys(STATUSES, 0)
        for r in self.db.execute("SELECT status, count(*) FROM cases GROUP BY status"):
            counts[r[0]] = int(r[1])
        return counts

    def read_image(self, case_id: str, sources: SourceChecker | None = None) -> SliceImage:
        """The case's slice, read again from its source, which must still match the
        fingerprint taken when the case was added and lie on the case's grid.

        A changed or missing source is an :class:`.InputError` naming it (with the hint
        ``paraspinal project check --accept-sources``). The source is checked after it is
        read, so a change before or during the read is caught too. Hashes are kept for
        this project object while a file's size, mtime, ctime and inode stay put, so
        reading slices of one source again costs a ``stat`` per file; ``sources`` (a
        caller's checker, e.g. the batch's) is used instead when given.
        """
        case = self.case(case_id)
        checker = sources if sources is not None else self._sources
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

    def set_status(self, case_id: str, status: str, message: str = "",
                   expect_version: int | None = None) -> None:
        """Set a case's status, e.g. ``failed`` with the reason.

        Other than ``failed``, a status must agree with the case's labels: ``new`` without
        any version, otherwise the status of the latest version's kind. ``expect_version``:
        only if the latest version number is still this one (else StaleVersionError).
        """
        _check_choice("status", status, STATUSES)
        with self._transaction() as db:
            self.case(case_id)
            if expect_version is not None:
                check_latest(db, self.root, case_id, expect_version, None)
            expected = self._derived_status(db, case_id)
            if status not in ("failed", expected):
                raise ProjectError(self.root, f"case {case_id!r} cannot be {status!r}: its "
                                              f"labels make it {expected!r}")
            db.execute("UPDATE cases SET status = ?, message = ?, updated_at = ? WHERE id = ?",
                       (status, message, _now(), case_id))
            self._log(db, case_id, "status", f"{status}: {message}" if message else status)

    def set_qc(self, case_id: str, flags: Mapping[str, Any]) -> None:
        """Replace a case's QC flags (any JSON-friendly mapping)."""
        text = _dumps(dict(flags))
        with self._transaction() as db:
            self.case(case_id)
            db.execute("UPDATE cases SET qc_flags_json = ?, updated_at = ? WHERE id = ?",
                       (text, _now(), case_id))
            self._log(db, case_id, "qc", text)

    def set_level(self, case_id: str, level: str | None) -> None:
        """Record the case's spinal level (e.g. detected at prediction)."""
        with self._transaction() as db:
            self.case(case_id)
            db.execute("UPDATE cases SET level = ?, updated_at = ? WHERE id = ?",
                       (level, _now(), case_id))
            self._log(db, case_id, "level", str(level))

    # ----------------------------------------------------------------- labels

    def save_labels(
        self,
        case_id: str,
        labels: np.ndarray,
        kind: str,
        labelled: Iterable[int] | None = None,
        model_id: str | None = None,
        expect_version: int | None = None,
    ) -> LabelVersion:
        """Save a new label version of a case and set its status from ``kind``.

        ``labelled`` lists the label values this version's author annotated or vouched for
        (all labels when None; e.g. only multifidus and erector spinae for a partial
        correction); ``model_id`` names the registered model that predicted it. The file is
        written first, under a new name that never existed, then recorded in one
        transaction that assigns the next version number. An automatic version never
        supersedes a person's: while the latest version is corrected or verified, saving an
        automatic one raises :class:`.StaleVersionError` and records nothing. ``expect_version``
        (batch workers) makes it a compare-and-set: saved only while the case's latest
        version number is still this one (0: none), else :class:`.StaleVersionError` too.
        A person's version of an all-zero map is refused (:class:`.ProjectError`): it would
        vouch for labels with no pixel at all; vouched values that are merely absent are
        allowed and named in the event log (:mod:`.vouch`).
        """
        _check_choice("kind", kind, KINDS)
        marks = _labelled(labelled, kind)
        data = _label_array(labels)
        case = self.case(case_id)
        if kind in HUMAN_KINDS and (problem := empty_map_problem(data, kind, marks)):
            raise ProjectError(self.root, f"case {case.id}: {problem}")
        absent = absent_note(data, marks) if kind in HUMAN_KINDS else None
        if model_id is not None and self.db.execute(
                "SELECT 1 FROM models WHERE id = ?", (model_id,)).fetchone() is None:
            raise ProjectError(self.root, f"model {model_id!r} is not registered in this "
                                          "project (register_model it first)")
        folder = self.root / LABELS_DIR / case.id
        folder.mkdir(parents=True, exist_ok=True)
        stage = folder / f"{_STAGE}{uuid.uuid4().hex}.nii.gz"
        placed: Path | None = None
        try:
            write_labels(data, case.geometry, stage)
            digest = sha256_of(stage)
            with self._transaction() as db:
                check_latest(db, self.root, case.id, expect_version, kind)
                version = self._next_version(db, case.id, folder)
                rel = f"{LABELS_DIR}/{case.id}/v{version:03d}_{kind}.nii.gz"
                _place_new(stage, self.root / rel)
                placed = self.root / rel
                cur = db.execute(
                    "INSERT INTO label_versions (case_id, version, kind, path, sha256, "
                    "labelled_json, model_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (case.id, version, kind, rel, digest, _dumps(marks), model_id, _now()))
                row_id = int(cur.lastrowid)
                db.execute(
                    "UPDATE cases SET status = ?, message = '', verified_labels_json = ?, "
                    "updated_at = ? WHERE id = ?",
                    (STATUS_OF_KIND[kind], _dumps(self._derived_verified(db, case.id)),
                     _now(), case.id))
                self._log(db, case.id, "save", f"v{version} {kind} labels {marks}"
                          + (f"; {absent}" if absent else ""))
        except BaseException:
            if placed is not None and not self._recorded(placed):
                with contextlib.suppress(OSError):
                    placed.unlink()
            raise
        finally:
            stage.unlink(missing_ok=True)
        return self._version_by_id(row_id)

    def _next_version(self, db: sqlite3.Connection, case_id: str, folder: Path) -> int:
        """One past the highest version in the database or on disk (orphans included)."""
        highest = db.execute("SELECT coalesce(max(version), 0) FROM label_versions "
                             "WHERE case_id = ?", (case_id,)).fetchone()[0]
        for p in folder.iterdir():
            m = _VERSION_FILE.match(p.name)
            if m:
                highest = max(highest, int(m.group(1)))
        return int(highest) + 1

    def _recorded(self, path: Path) -> bool:
        """Whether a row points to ``path`` (True when the database cannot say)."""
        rel = path.relative_to(self.root).as_posix()
        try:
            return self.db.execute("SELECT 1 FROM label_versions WHERE path = ?",
                                   (rel,)).fetchone() is not None
        except sqlite3.Error:
            return True

    def label_versions(self, case_id: str) -> list[LabelVersion]:
        """Every label version of a case, oldest first."""
        self.case(case_id)
        rows = self.db.execute("SELECT * FROM label_versions WHERE case_id = ? ORDER BY "
                               "version", (case_id,)).fetchall()
        return [self._version_row(r) for r in rows]

    def latest_version(self, case_id: str, kinds: Sequence[str] | None = None
                       ) -> LabelVersion | None:
        """The newest label version of a case (of the given kinds), or None."""
        versions = self.label_versions(case_id)
        if isinstance(kinds, str):
            kinds = (kinds,)
        if kinds is not None:
            for kind in kinds:
                _check_choice("kind", kind, KINDS)
            versions = [v for v in versions if v.kind in kinds]
        return versions[-1] if versions else None

    def latest_labels(self, case_id: str, kinds: Sequence[str] | None = None
                      ) -> tuple[np.ndarray, LabelVersion]:
        """The newest label map of a case (of the given kinds) on the case's grid.

        Its file must still match the SHA-256 recorded when it was saved.
        """
        version = self.latest_version(case_id, kinds)
        if version is None:
            which = f" of kind {kinds if isinstance(kinds, str) else ', '.join(kinds)}" \
                if kinds else ""
            raise ProjectError(self.root, f"case {case_id!r} has no labels{which}")
        return self.read_version(version), version

    def read_version(self, version: LabelVersion) -> np.ndarray:
        """The label map of one version, checked against its SHA-256 and the case's grid."""
        if not version.path.is_file():
            raise ProjectError(version.path, "label file is missing from the project")
        if sha256_of(version.path) != version.sha256:
            raise ProjectError(version.path, "label file has changed since it was saved "
                                             "(SHA-256 differs)")
        return read_labels(version.path, self.case(version.case_id).geometry)

    def training_cases(self) -> list[TrainingCase]:
        """Cases whose latest label version was made by a person, with trusted labels."""
        out = []
        for case in self.cases():
            if case.status == "failed":
                continue
            version = self.latest_version(case.id)
            if version is not None and version.kind in HUMAN_KINDS:
                out.append(TrainingCase(case, version, list(case.verified_labels)))
        return out

    # ----------------------------------------------------------------- measurements

    def save_measurements(self, case_id: str, label_version_id: int,
                          row: Mapping[str, Any]) -> int:
        """Store a measurement row made on one label version of the case; returns its id."""
        text = _dumps(dict(row))
        with self._transaction() as db:
            found = db.execute("SELECT case_id FROM label_versions WHERE id = ?",
                               (label_version_id,)).fetchone()
            if found is None or found[0] != case_id:
                raise ProjectError(self.root, f"label version {label_version_id} is not a "
                                              f"version of case {case_id!r}")
            cur = db.execute("INSERT INTO measurements (case_id, label_version_id, row_json, "
                             "created_at) VALUES (?, ?, ?, ?)",
                             (case_id, label_version_id, text, _now()))
            self._log(db, case_id, "measure", f"label version id {label_version_id}")
        return int(cur.lastrowid)

    def measurements(self, case_id: str | None = None) -> list[MeasurementRow]:
        """Stored measurement rows (of one case), oldest first."""
        sql = "SELECT id, case_id, label_version_id, row_json, created_at FROM measurements"
        rows = (self.db.execute(sql + " ORDER BY id") if case_id is None else
                self.db.execute(sql + " WHERE case_id = ? ORDER BY id", (case_id,)))
        return [MeasurementRow(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def history(self, case_id: str | None = None) -> list[tuple[str, str | None, str, str]]:
        """The event log (time, case, action, detail), oldest first."""
        sql = "SELECT at, case_id, action, detail FROM events"
        rows = (self.db.execute(sql + " ORDER BY id") if case_id is None else
                self.db.execute(sql + " WHERE case_id = ? ORDER BY id", (case_id,)))
        return [tuple(r) for r in rows]

    # ----------------------------------------------------------------- models (.models)

    def register_model(
        self,
        bundle_dir: str | os.PathLike[str],
        model_id: str | None = None,
        parent: str | None = None,
        active: bool = False,
    ) -> str:
        """Copy a model bundle into the project and register it; returns its id.

        Only a bundle that loads is registered: its card fits the schema and every file of
        it, the weights included, matches its SHA-256 in the card (a hash is never optional;
        see :mod:`.models`). Without ``model_id`` the id is made from the card's name and
        version; an existing id is never overwritten. ``parent`` defaults to the card's.
        """
        from .models import register_model

        return register_model(self, bundle_dir, model_id, parent, active)

    def models(self) -> list[ModelRow]:
        """Registered models, oldest first."""
        from .models import models

        return models(self)

    def model(self, model_id: str) -> ModelRow:
        """One registered model by id."""
        from .models import model

        return model(self, model_id)

    def active_model(self) -> ModelRow | None:
        """The model used for new predictions, or None."""
        from .models import active_model

        return active_model(self)

    def activate(self, model_id: str) -> None:
        """Make a registered model (any earlier version too) the one active model."""
        from .models import activate

        activate(self, model_id)

    # ----------------------------------------------------------------- check and repair

    def check(self, verify_hashes: bool = True) -> CheckReport:
        """Compare the database with the files: integrity, missing or changed label files and
        sources, statuses that disagree with the labels, claims, orphan and temporary files
        (see :mod:`.checking`)."""
        from .checking import check_project

        return check_project(self, verify_hashes)

    def repair(self) -> CheckReport:
        """Set orphans aside under ``orphans/``, remove temporary files and stale claims,
        recompute statuses and verified labels, fingerprint sources that have none. Missing
        or changed files cannot be repaired and stay in the report. Run it while no other
        process writes to the project."""
        from .checking import repair_project

        return repair_project(self)

    # ----------------------------------------------------------------- internals

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock at once (``BEGIN IMMEDIATE``)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _log(self, db: sqlite3.Connection, case_id: str | None, action: str,
             detail: str = "") -> None:
        db.execute("INSERT INTO events (at, case_id, action, detail) VALUES (?, ?, ?, ?)",
                   (_now(), case_id, action, detail))

    def _kinds(self, db: sqlite3.Connection, case_id: str) -> list[tuple[str, list[int]]]:
        rows = db.execute("SELECT kind, labelled_json FROM label_versions WHERE case_id = ? "
                          "ORDER BY version", (case_id,)).fetchall()
        return [(r[0], json.loads(r[1])) for r in rows]

    def _derived_status(self, db: sqlite3.Connection, case_id: str) -> str:
        kinds = self._kinds(db, case_id)
        return STATUS_OF_KIND[kinds[-1][0]] if kinds else "new"

    def _derived_verified(self, db: sqlite3.Connection, case_id: str) -> list[int]:
        return _verified_of(self._kinds(db, case_id))

    def _case_row(self, d: sqlite3.Row) -> CaseRow:
        spacing = json.loads(d["spacing_json"]) if d["spacing_json"] else None
        return CaseRow(
            id=d["id"], source=d["source"], series_uid=d["series_uid"] or None,
            slice_index=d["slice_index"], slice_count=d["slice_count"],
            spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
            level=d["level"], geometry=Geometry.from_dict(json.loads(d["geometry_json"])),
            status=d["status"], message=d["message"], qc_flags=json.loads(d["qc_flags_json"]),
            verified_labels=json.loads(d["verified_labels_json"]), added_at=d["added_at"],
            updated_at=d["updated_at"], fingerprint=None if d["source_sha256"] is None else
            SourceFingerprint(d["source_size"], d["source_mtime_ns"], d["source_sha256"]))

    def _version_row(self, d: sqlite3.Row) -> LabelVersion:
        return LabelVersion(
            id=d["id"], case_id=d["case_id"], version=d["version"], kind=d["kind"],
            relpath=d["path"], path=self.root / d["path"], sha256=d["sha256"],
            labelled=json.loads(d["labelled_json"]), model_id=d["model_id"],
            created_at=d["created_at"])

    def _version_by_id(self, row_id: int) -> LabelVersion:
        row = self.db.execute("SELECT * FROM label_versions WHERE id = ?", (row_id,)).fetchone()
        return self._version_row(row)


# --------------------------------------------------------------------------- helpers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays and paths, as the pipeline's rows hold them."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> str:
    try:
        return json.dumps(value, default=_json_default, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot store this value as JSON: {err}") from None


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")


def _labelled(labelled: Iterable[int] | None, kind: str) -> list[int]:
    """The label values a version vouches for: sorted, unique, each a real label."""
    if labelled is None:
        return list(LABEL_VALUES)
    values = sorted({int(v) for v in labelled})
    bad = [v for v in values if v not in LABEL_VALUES]
    if bad:
        raise ValueError(f"labelled values must be among {list(LABEL_VALUES)}; got {bad}")
    if not values and kind in HUMAN_KINDS:
        raise ValueError(f"a {kind} version must vouch for at least one label")
    return values


def _label_array(labels: np.ndarray) -> np.ndarray:
    """A 2-D map of whole label values (fractions are refused, not truncated)."""
    data = np.asarray(labels)
    if data.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got shape {data.shape}")
    if data.dtype == bool or not np.issubdtype(data.dtype, np.number):
        raise ValueError(f"labels must hold numbers 0–8, got dtype {data.dtype}")
    if not np.issubdtype(data.dtype, np.integer) and not (
            np.all(np.isfinite(data)) and np.array_equal(data, np.round(data))):
        raise ValueError("labels must be whole numbers (found fractions or NaN)")
    return data


def _verified_of(versions: Sequence[Any]) -> list[int]:
    """Labels vouched for by the run of human versions that ends with the latest one.

    Accepts (kind, labelled) pairs or :class:`LabelVersion` rows, oldest first. A new
    automatic version starts over: nothing of it has been checked by a person.
    """
    out: set[int] = set()
    for v in reversed(versions):
        kind, marks = (v.kind, v.labelled) if isinstance(v, LabelVersion) else v
        if kind not in HUMAN_KINDS:
            break
        out.update(marks)
    return sorted(out)


def _place_new(src: Path, dst: Path) -> None:
    """Give the complete file ``src`` the name ``dst``, which must not exist yet.

    A hard link fails rather than replace an existing file. Where the file system has no
    hard links, the caller's write lock keeps the check-then-rename free of races.
    """
    try:
        os.link(src, dst)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "label version file already exists",
                              str(dst)) from None
    except OSError:
        if dst.exists():
            raise FileExistsError(errno.EEXIST, "file already exists", str(dst)) from None
        os.replace(src, dst)
    fsync_path(dst.parent)


