"""Creating and opening a project's SQLite database.

:meth:`.Project.init` and :meth:`.Project.open` call these functions. A new database is built
under a staging name, complete with its schema and meta rows, and linked into place last
(:func:`.placing.place_new`), so an interrupted ``init`` never leaves a half-made project.
An existing one is opened in WAL mode with foreign keys on and full synchronous writes, after
checks that it is a project of a schema this version reads; an older one is upgraded on open
(:func:`.schema.upgrade`, one transaction).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

from .placing import STAGE, place_new
from .records import ProjectError
from .schema import (
    APPLICATION,
    DB_NAME,
    LABELS_DIR,
    MODELS_DIR,
    SCHEMA,
    SCHEMA_VERSION,
    upgrade,
)
from .values import now_text


def create(folder: str | os.PathLike[str]) -> Path:
    """Make the project folder and its database (what :meth:`.Project.init` does before it
    opens the project); returns the folder, absolute."""
    root = Path(folder).absolute()
    if (root / DB_NAME).exists():
        raise ProjectError(root, "a project already exists here")
    if root.exists() and not root.is_dir():
        raise ProjectError(root, "exists and is not a folder")
    root.mkdir(parents=True, exist_ok=True)
    (root / LABELS_DIR).mkdir(exist_ok=True)
    (root / MODELS_DIR).mkdir(exist_ok=True)
    tmp = root / f"{STAGE}{uuid.uuid4().hex}.sqlite"
    try:
        db = sqlite3.connect(tmp, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript("BEGIN;" + SCHEMA)
            now = now_text()
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                ("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION)),
                ("created_at", now)])
            db.execute("INSERT INTO events (at, action, detail) VALUES (?, 'init', ?)",
                       (now, str(root)))
            db.execute("COMMIT")
        finally:
            db.close()
        try:
            place_new(tmp, root / DB_NAME)
        except FileExistsError:
            raise ProjectError(root, "a project already exists here") from None
    finally:
        tmp.unlink(missing_ok=True)
    return root


def connect(folder: str | os.PathLike[str]) -> tuple[Path, sqlite3.Connection]:
    """The project folder, absolute, and its database opened, checked and upgraded (what
    :meth:`.Project.open` does before it makes the project object)."""
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
    return root, db
