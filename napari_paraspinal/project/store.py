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
reports handed out are in :mod:`.records`. :class:`Project` is the one public class; it holds
the connection, the lock and the transactions, and its methods hand each job to a module:
creating and opening the database (:mod:`.database`), cases (:mod:`.cases`), label versions
saved and read (:mod:`.versions`), measurements (:mod:`.measurements`), the event log
(:mod:`.events`), models (:mod:`.models`), check and repair (:mod:`.checking`). Files are
placed by :mod:`.placing`; the values written are checked and encoded by :mod:`.values`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import sha256_of
from ..core.geometry import SliceImage
from ..core.io import InputRef
from . import cases as _cases
from . import database as _database
from . import events as _events
from . import measurements as _measurements
from . import versions as _versions
from .fingerprint import SourceChecker
from .placing import STAGE, place_new  # noqa: F401  (re-exported, see below)
from .records import (
    AddResult,
    CaseRow,
    CheckReport,
    LabelVersion,
    MeasurementRow,
    ModelRow,
    TrainingCase,
)
from .schema import DB_NAME, SCHEMA_VERSION, STATUS_OF_KIND  # noqa: F401  (re-exported)
from .values import json_text, now_text, verified_of  # noqa: F401  (re-exported)

# Re-exported: .models and .checking import SAFE_ID, STAGE, json_text, now_text and verified_of
# from here; the tests look up SCHEMA_VERSION, STATUS_OF_KIND, sha256_of and place_new here,
# and the kill tests replace the last two here to stop a save between its steps.

SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


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
        root = _database.create(folder)
        return cls.open(root)

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> Project:
        """Open an existing project; anything else is a clear error."""
        root, db = _database.connect(folder)
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

    # ----------------------------------------------------------------- cases (.cases)

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
        return _cases.add(self, inputs, slices=slices, slice_index=slice_index,
                          spacing=spacing, level=level)

    def _add_one(self, ref: InputRef, index: int, spacing: tuple[float, float] | None,
                 level: str | None, stack: bool, hashed: dict) -> tuple[str, bool, list[str]]:
        return _cases.add_one(self, ref, index, spacing, level, stack, hashed)

    def _find_case(self, source: str, uid: str, index: int) -> str | None:
        return _cases.find_case(self, source, uid, index)

    def _new_case_id(self, ref: InputRef, suffix: str = "") -> str:
        """The file name made safe as ``paraspinal run`` makes it (:func:`.core.names.safe_id`),
        with ``_sNNN`` for a stack's slice, unique ignoring case."""
        return _cases.new_case_id(self, ref, suffix)

    def case(self, case_id: str) -> CaseRow:
        """One case by id."""
        return _cases.case(self, case_id)

    def cases(self, status: str | None = None) -> list[CaseRow]:
        """All cases in the order they were added, or those with one status."""
        return _cases.cases(self, status)

    def next_case(self, after: str | None = None, by: str = "order") -> str | None:
        """The next case still to be corrected or verified (see :func:`.worklist.next_case`)."""
        from .worklist import next_case

        return next_case(self, after, by)

    def status_counts(self) -> dict[str, int]:
        """Number of cases in each status (every status listed, zeros included)."""
        return _cases.status_counts(self)

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
        return _cases.read_image(self, case_id, sources)

    def set_status(self, case_id: str, status: str, message: str = "",
                   expect_version: int | None = None) -> None:
        """Set a case's status, e.g. ``failed`` with the reason.

        Other than ``failed``, a status must agree with the case's labels: ``new`` without
        any version, otherwise the status of the latest version's kind. ``expect_version``:
        only if the latest version number is still this one (else StaleVersionError).
        """
        _cases.set_status(self, case_id, status, message, expect_version)

    def set_qc(self, case_id: str, flags: Mapping[str, Any]) -> None:
        """Replace a case's QC flags (any JSON-friendly mapping)."""
        _cases.set_qc(self, case_id, flags)

    def set_level(self, case_id: str, level: str | None) -> None:
        """Record the case's spinal level (e.g. detected at prediction)."""
        _cases.set_level(self, case_id, level)

    # ----------------------------------------------------------------- labels (.versions)

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
        # this module's place_new and sha256_of as they are now (see the imports above)
        return _versions.save_labels(self, case_id, labels, kind, labelled, model_id,
                                     expect_version, place=place_new, sha256_file=sha256_of)

    def _next_version(self, db: sqlite3.Connection, case_id: str, folder: Path) -> int:
        """One past the highest version in the database or on disk (orphans included)."""
        return _versions.next_version(db, case_id, folder)

    def _recorded(self, path: Path) -> bool:
        """Whether a row points to ``path`` (True when the database cannot say)."""
        return _versions.recorded(self, path)

    def label_versions(self, case_id: str) -> list[LabelVersion]:
        """Every label version of a case, oldest first."""
        return _versions.label_versions(self, case_id)

    def latest_version(self, case_id: str, kinds: Sequence[str] | None = None
                       ) -> LabelVersion | None:
        """The newest label version of a case (of the given kinds), or None."""
        return _versions.latest_version(self, case_id, kinds)

    def latest_labels(self, case_id: str, kinds: Sequence[str] | None = None
                      ) -> tuple[np.ndarray, LabelVersion]:
        """The newest label map of a case (of the given kinds) on the case's grid.

        Its file must still match the SHA-256 recorded when it was saved.
        """
        return _versions.latest_labels(self, case_id, kinds)

    def read_version(self, version: LabelVersion) -> np.ndarray:
        """The label map of one version, checked against its SHA-256 and the case's grid."""
        return _versions.read_version(self, version)

    def training_cases(self) -> list[TrainingCase]:
        """Cases whose latest label version was made by a person, with trusted labels."""
        return _versions.training_cases(self)

    # ----------------------------------------------------------------- measurements, events

    def save_measurements(self, case_id: str, label_version_id: int,
                          row: Mapping[str, Any]) -> int:
        """Store a measurement row made on one label version of the case; returns its id."""
        return _measurements.save_measurements(self, case_id, label_version_id, row)

    def measurements(self, case_id: str | None = None) -> list[MeasurementRow]:
        """Stored measurement rows (of one case), oldest first."""
        return _measurements.measurements(self, case_id)

    def history(self, case_id: str | None = None) -> list[tuple[str, str | None, str, str]]:
        """The event log (time, case, action, detail), oldest first."""
        return _events.history(self, case_id)

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
        _events.log(db, case_id, action, detail)

    def _kinds(self, db: sqlite3.Connection, case_id: str) -> list[tuple[str, list[int]]]:
        return _versions.version_kinds(db, case_id)

    def _derived_status(self, db: sqlite3.Connection, case_id: str) -> str:
        return _versions.derived_status(self, db, case_id)

    def _derived_verified(self, db: sqlite3.Connection, case_id: str) -> list[int]:
        return _versions.derived_verified(self, db, case_id)

    def _case_row(self, d: sqlite3.Row) -> CaseRow:
        return _cases.case_row(d)

    def _version_row(self, d: sqlite3.Row) -> LabelVersion:
        return _versions.version_row(self, d)

    def _version_by_id(self, row_id: int) -> LabelVersion:
        return _versions.version_by_id(self, row_id)
