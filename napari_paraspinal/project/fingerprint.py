"""Source fingerprints: notice that a case's source image changed or vanished after it was added.

A case's labels only mean something on the image they were drawn on. A source overwritten
with another image on the same grid still reads, so a check of the grid cannot tell; the
size, mtime and SHA-256 recorded when the case is added can. ``project check`` reports
changed and missing sources per case, export measures only the cases whose source is intact
(and lists the others), the batch marks such a case failed instead of segmenting an image
its case was not made from, and :meth:`.Project.read_image` (the napari widget,
fine-tuning) refuses it with a clear error.

A file source is hashed as it is; a DICOM series (a folder and a series UID) as the sorted
names and SHA-256 of its image files, so a file replaced, added or removed changes it. Cases
added before fingerprints existed (schema 1) have none: they are reported as "not
fingerprinted", and ``project check --repair`` records their sources as they are now.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import dicom
from ..core.atomic import sha256_of
from ..core.errors import InputError
from ..core.io import InputRef
from .records import CaseRow, SourceFingerprint

if TYPE_CHECKING:
    from .store import Project

INTACT = "intact"
CHANGED = "changed"
MISSING = "missing"
NOT_FINGERPRINTED = "not fingerprinted"


@dataclass(frozen=True)
class SourceState:
    """How a case's source compares with its fingerprint; ``detail`` says what differs."""

    case_id: str
    source: str
    state: str  # INTACT, CHANGED, MISSING or NOT_FINGERPRINTED
    detail: str = ""

    @property
    def usable(self) -> bool:
        """True when labels of the case may be measured on the source as it is now."""
        return self.state in (INTACT, NOT_FINGERPRINTED)

    def __str__(self) -> str:
        text = f"case {self.case_id}: source {self.state}: {self.source}"
        return f"{text} ({self.detail})" if self.detail else text


def source_files(ref: InputRef) -> list[Path]:
    """The files an input is read from (a DICOM series' image files, sorted).

    Raises FileNotFoundError when the file, the folder or the series is gone.
    """
    path = ref.path
    if path.is_file():
        return [path]
    if path.is_dir():
        try:
            stack = dicom.open_series(path, ref.series_uid, str(ref))
        except InputError as err:
            raise FileNotFoundError(err.problem) from None
        return sorted({fr.path for fr in stack.frames})
    raise FileNotFoundError("no such file or folder")


def _stat(files: Iterable[Path]) -> tuple[int, int, tuple]:
    """Total size and newest mtime of the files, and what identifies their state for a
    cache: each file's size, mtime, ctime and inode (FileNotFoundError when one vanished).

    The ctime changes whenever a file is written or its times are set, so a file rewritten
    with its old size and mtime restored still gets a new key and is hashed again.
    """
    sizes, mtimes, key = [], [], []
    for f in files:
        st = os.stat(f)
        sizes.append(st.st_size)
        mtimes.append(st.st_mtime_ns)
        key.append((str(f), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
    return sum(sizes), max(mtimes, default=0), tuple(key)


def _digest(files: list[Path], single: bool) -> str:
    if single:
        return sha256_of(files[0])
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\t{sha256_of(f)}\n".encode())
    return h.hexdigest()


def fingerprint_of(ref: InputRef, cache: dict | None = None) -> SourceFingerprint:
    """The source's fingerprint now. ``cache`` (a dict the caller keeps) hashes a source
    once for all its slices while each of its files keeps its size, mtime, ctime and inode.

    Raises FileNotFoundError when the source is gone.
    """
    files = source_files(ref)
    size, mtime, stats = _stat(files)
    key = (str(ref.path), ref.series_uid, stats)
    if cache is not None and key in cache:
        return cache[key]
    found = SourceFingerprint(size, mtime, _digest(files, ref.path.is_file()))
    if cache is not None:
        cache[key] = found
    return found


class SourceChecker:
    """Compares cases' sources with their fingerprints, each source hashed once per checker.

    ``full`` False trusts an unchanged size and mtime (a quick look); True (export, check)
    always compares the SHA-256, so a copy that kept the size and the mtime is still caught.
    """

    def __init__(self, full: bool = True) -> None:
        self.full = full
        self._cache: dict = {}

    def state(self, case: CaseRow) -> SourceState:
        """The state of one case's source."""
        ref, recorded = case.ref, case.fingerprint
        try:
            files = source_files(ref)
            size, mtime, _ = _stat(files)
        except FileNotFoundError as err:
            return SourceState(case.id, str(ref), MISSING, _why(err))
        if recorded is None:
            return SourceState(case.id, str(ref), NOT_FINGERPRINTED,
                               "added before sources were fingerprinted")
        if not self.full and (size, mtime) == (recorded.size, recorded.mtime_ns):
            return SourceState(case.id, str(ref), INTACT)
        try:
            now = fingerprint_of(ref, self._cache)
        except FileNotFoundError as err:
            return SourceState(case.id, str(ref), MISSING, _why(err))
        if now.sha256 == recorded.sha256:
            return SourceState(case.id, str(ref), INTACT)
        return SourceState(case.id, str(ref), CHANGED, _difference(recorded, now))

    def require(self, case: CaseRow) -> SourceState:
        """The state of a case's source, which must be usable (intact, or not fingerprinted):
        a changed or missing source is an :class:`.InputError` naming it and saying what to
        do."""
        state = self.state(case)
        if state.usable:
            return state
        if state.state == MISSING:
            todo = (f"put it back where it was (`{CHECK_HINT}` accepts a changed source "
                    "once a person has checked the case's labels still fit it)")
        else:
            todo = (f"if the case's labels still fit the image as it is now, accept it with "
                    f"`{CHECK_HINT}`")
        raise InputError(state.source, f"source {state.state}: the source has changed since "
                                       f"case {case.id!r} was added ({state.detail}); {todo}")


#: What a person runs once they know a changed source's labels still fit.
CHECK_HINT = "paraspinal project check --accept-sources"


def _why(err: OSError) -> str:
    return err.strerror.lower() if err.strerror else str(err)


def _difference(old: SourceFingerprint, new: SourceFingerprint) -> str:
    parts = ["SHA-256 differs from when the case was added"]
    if new.size != old.size:
        parts.append(f"size {old.size} -> {new.size} bytes")
    if _time(new.mtime_ns) != _time(old.mtime_ns):
        parts.append(f"modified {_time(new.mtime_ns)} (was {_time(old.mtime_ns)})")
    return "; ".join(parts)


def _time(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="seconds")


def source_states(project: Project, full: bool = True) -> list[SourceState]:
    """The source state of every case, in the order the cases were added."""
    checker = SourceChecker(full)
    return [checker.state(case) for case in project.cases()]


def record_fingerprints(project: Project, case_ids: Iterable[str], why: str) -> list[str]:
    """Fingerprint the sources of these cases as they are now (old cases, or changes a person
    accepted); returns what was done, a line per case. Missing sources are left alone."""
    cache: dict = {}
    done = []
    for cid in case_ids:
        case = project.case(cid)
        try:
            fp = fingerprint_of(case.ref, cache)
        except FileNotFoundError:
            done.append(f"case {cid}: source missing, not fingerprinted: {case.ref}")
            continue
        with project._transaction() as db:
            db.execute("UPDATE cases SET source_size = ?, source_mtime_ns = ?, "
                       "source_sha256 = ? WHERE id = ?", (fp.size, fp.mtime_ns, fp.sha256, cid))
            project._log(db, cid, "fingerprint", f"{why}: {fp.sha256}")
        done.append(f"case {cid}: {why}: source fingerprinted as it is now ({fp.size} bytes, "
                    f"SHA-256 {fp.sha256[:12]}…)")
    return done
