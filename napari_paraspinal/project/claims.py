"""Claims and compare-and-set: batch workers split the cases and never bury newer work.

Two races are closed here, each inside one SQLite write transaction (``BEGIN IMMEDIATE``):

- Two ``project segment`` runs list the same new cases. Before segmenting a case a worker
  claims it: one row per case with its owner (pid, host, a token) and the time. The claim is
  taken only when nobody else holds a live claim and the case is still as the worker listed
  it (status among those asked for, latest version the one seen); otherwise the worker skips
  the case, so two runs split the cases and none is segmented twice. A claim whose owner died
  (its pid is gone on this host) or that is older than ``ttl_s`` is stale and may be taken
  over; ``project check`` lists claims, ``--repair`` clears stale ones.
- A person saves a correction while the batch segments that case. The batch's save is a
  compare-and-set (:func:`check_latest`, called by :meth:`.Project.save_labels` with
  ``expect_version``): it is recorded only if the case's latest version is still the one the
  worker read; otherwise :class:`.StaleVersionError` is raised and nothing is written. No
  automatic version is ever saved on top of a person's (corrected or verified) version,
  with or without ``expect_version``: that is refused the same way.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .records import StaleVersionError
from .schema import HUMAN_KINDS

if TYPE_CHECKING:
    from .store import Project

#: A claim this old is stale even when its owner cannot be seen to have died (another host).
DEFAULT_TTL_S = 3600.0
HOST = socket.gethostname()


@dataclass(frozen=True)
class Claim:
    """A batch worker's hold on one case."""

    case_id: str
    owner: str
    pid: int
    host: str
    claimed_at: str
    seen_version: int  # the latest version number the worker read (0: none)

    def __str__(self) -> str:
        return (f"case {self.case_id}: claimed by pid {self.pid} on {self.host} since "
                f"{self.claimed_at}")


def latest_number(db: sqlite3.Connection, case_id: str) -> int:
    """The case's latest version number (0 when it has none)."""
    return int(db.execute("SELECT coalesce(max(version), 0) FROM label_versions WHERE "
                          "case_id = ?", (case_id,)).fetchone()[0])


def check_latest(db: sqlite3.Connection, root: Path, case_id: str, expected: int | None,
                 kind: str | None) -> None:
    """Compare-and-set guard, run inside the writer's transaction: the case's latest version
    must still be ``expected`` (None: any), and an ``automatic`` version never follows a
    person's (:meth:`.Project.save_labels` enforces this on every save)."""
    row = db.execute("SELECT version, kind FROM label_versions WHERE case_id = ? ORDER BY "
                     "version DESC LIMIT 1", (case_id,)).fetchone()
    latest = int(row[0]) if row else 0
    if expected is not None and latest != expected:
        raise StaleVersionError(root, f"case {case_id!r} changed while it was being worked "
                                      f"on: its latest version is {latest}, the worker read "
                                      f"{expected}; nothing was saved")
    if kind == "automatic" and row is not None and row[1] in HUMAN_KINDS:
        raise StaleVersionError(root, f"case {case_id!r}: its latest version {latest} is "
                                      f"{row[1]} by a person; an automatic version never "
                                      "supersedes it, nothing was saved")


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is running (True when it cannot be told)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        try:
            import psutil
        except ImportError:
            return True
        return bool(psutil.pid_exists(pid))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def is_stale(claim: Claim, ttl_s: float = DEFAULT_TTL_S, now: datetime | None = None) -> bool:
    """A claim whose owner died on this host, or older than ``ttl_s`` seconds."""
    if claim.host == HOST and not pid_alive(claim.pid):
        return True
    now = now or datetime.now(timezone.utc)
    try:
        age = (now - datetime.fromisoformat(claim.claimed_at)).total_seconds()
    except ValueError:
        return True
    return age > ttl_s


def _claim_of(row: sqlite3.Row | tuple) -> Claim:
    return Claim(row[0], row[1], int(row[2]), row[3], row[4], int(row[5]))


_COLUMNS = "case_id, owner, pid, host, claimed_at, seen_version"


def claims(project: Project) -> list[Claim]:
    """Every claim held on the project's cases."""
    rows = project.db.execute(f"SELECT {_COLUMNS} FROM claims ORDER BY rowid").fetchall()
    return [_claim_of(r) for r in rows]


def clear_stale(project: Project, ttl_s: float = DEFAULT_TTL_S) -> list[str]:
    """Remove stale claims (``project check --repair``); returns a line per claim removed."""
    done = []
    with project._transaction() as db:
        for claim in claims(project):
            if is_stale(claim, ttl_s):
                db.execute("DELETE FROM claims WHERE case_id = ? AND owner = ?",
                           (claim.case_id, claim.owner))
                done.append(f"removed stale claim: {claim}")
    return done


class Claims:
    """One worker's claims (its owner token is unique to this object)."""

    def __init__(self, project: Project, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.project = project
        self.ttl_s = ttl_s
        self.pid = os.getpid()
        self.owner = f"{HOST}:{self.pid}:{uuid.uuid4().hex[:12]}"

    def claim(self, case_id: str, statuses: Collection[str], seen_version: int) -> str | None:
        """Claim a case still in ``statuses`` whose latest version is ``seen_version``.

        Returns None when the case is now this worker's, else why it is not (another worker
        holds it, or it changed since it was listed).
        """
        with self.project._transaction() as db:
            row = db.execute("SELECT status FROM cases WHERE id = ?", (case_id,)).fetchone()
            if row is None:
                return "no such case"
            if row[0] not in statuses:
                return f"it is {row[0]} now"
            latest = latest_number(db, case_id)
            if latest != seen_version:
                return f"it changed since it was listed (version {latest} now)"
            held = db.execute(f"SELECT {_COLUMNS} FROM claims WHERE case_id = ?",
                              (case_id,)).fetchone()
            held = None if held is None else _claim_of(held)
            if held is not None and held.owner != self.owner:
                if not is_stale(held, self.ttl_s):
                    return f"another worker has it ({held})"
                self.project._log(db, case_id, "claim", f"took over the stale claim of pid "
                                                        f"{held.pid} on {held.host}")
            db.execute(f"INSERT OR REPLACE INTO claims ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                       (case_id, self.owner, self.pid, HOST,
                        datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                        seen_version))
        return None

    def release(self, case_id: str) -> None:
        """Give a case back (only this worker's claim is removed)."""
        with self.project._transaction() as db:
            db.execute("DELETE FROM claims WHERE case_id = ? AND owner = ?",
                       (case_id, self.owner))
