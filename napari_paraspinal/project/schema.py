"""The project database's schema and the names of its folders, files and states.

One place for what the SQLite file and the folder layout promise: the store
(:mod:`.store`) writes by it, and a reader of a project needs nothing else to know what a
status, a label version's kind or a bundle's files are called. Schema changes are
additive migrations (:data:`MIGRATIONS`), applied by :func:`upgrade` when an older project
is opened, so every project ever made still opens.
"""

from __future__ import annotations

import sqlite3

from ..core.labels import BY_VALUE

DB_NAME = "project.sqlite"
LABELS_DIR = "labels"
MODELS_DIR = "models"
ORPHANS_DIR = "orphans"
APPLICATION = "napari-paraspinal project"
SCHEMA_VERSION = 3

STATUSES = ("new", "predicted", "corrected", "verified", "failed")
KINDS = ("automatic", "corrected", "verified")
#: Case status after saving a label version of each kind.
STATUS_OF_KIND = {"automatic": "predicted", "corrected": "corrected", "verified": "verified"}
#: Label values a version may vouch for (background excluded).
LABEL_VALUES = tuple(sorted(BY_VALUE))
HUMAN_KINDS = ("corrected", "verified")

WEIGHTS = "weights.safetensors"
CARD = "card.json"

#: The first schema; :data:`MIGRATIONS` bring it (and every older project) up to date.
SCHEMA_V1 = f"""
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE cases (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    series_uid TEXT NOT NULL DEFAULT '',
    slice_index INTEGER NOT NULL CHECK (slice_index >= 0),
    slice_count INTEGER NOT NULL CHECK (slice_count >= 1),
    spacing_json TEXT,
    level TEXT,
    geometry_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'new' CHECK (status IN {STATUSES!r}),
    message TEXT NOT NULL DEFAULT '',
    qc_flags_json TEXT NOT NULL DEFAULT '{{}}',
    verified_labels_json TEXT NOT NULL DEFAULT '[]',
    added_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (source, series_uid, slice_index)
);
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    card_json TEXT NOT NULL,
    parent TEXT,
    weights_sha256 TEXT NOT NULL,
    created_at TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
);
CREATE UNIQUE INDEX models_one_active ON models (active) WHERE active = 1;
CREATE TABLE label_versions (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id),
    version INTEGER NOT NULL CHECK (version >= 1),
    kind TEXT NOT NULL CHECK (kind IN {KINDS!r}),
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    labelled_json TEXT NOT NULL,
    model_id TEXT REFERENCES models (id),
    created_at TEXT NOT NULL,
    UNIQUE (case_id, version)
);
CREATE TRIGGER label_versions_never_updated BEFORE UPDATE ON label_versions
BEGIN SELECT RAISE(ABORT, 'label versions are never changed'); END;
CREATE TRIGGER label_versions_never_deleted BEFORE DELETE ON label_versions
BEGIN SELECT RAISE(ABORT, 'label versions are never deleted'); END;
CREATE TABLE measurements (
    id INTEGER PRIMARY KEY,
    case_id TEXT NOT NULL REFERENCES cases (id),
    label_version_id INTEGER NOT NULL REFERENCES label_versions (id),
    row_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX measurements_case ON measurements (case_id);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    case_id TEXT,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_case ON events (case_id);
"""

#: Statements that bring a project of the previous schema version up to each version.
#: Version 2: each case's source fingerprint (NULL for cases added before it: "not
#: fingerprinted") and per-case claims of batch workers. Version 3: each case's uncertainty
#: score from its last segmentation (:mod:`.worklist`; NULL: not segmented since) and each
#: label version's author (the OS user who saved it; NULL for versions saved before).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (
        "ALTER TABLE cases ADD COLUMN source_size INTEGER",
        "ALTER TABLE cases ADD COLUMN source_mtime_ns INTEGER",
        "ALTER TABLE cases ADD COLUMN source_sha256 TEXT",
        """CREATE TABLE claims (
    case_id TEXT PRIMARY KEY REFERENCES cases (id),
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    seen_version INTEGER NOT NULL
)""",
    ),
    3: (
        "ALTER TABLE cases ADD COLUMN uncertainty REAL",
        "ALTER TABLE label_versions ADD COLUMN author TEXT",
    ),
}

#: A new project's schema: the first one with every migration applied, so new and
#: upgraded projects are the same.
SCHEMA = SCHEMA_V1 + "".join(
    f"{stmt};\n" for v in sorted(MIGRATIONS) for stmt in MIGRATIONS[v])


def upgrade(db: sqlite3.Connection) -> int:
    """Bring an older project's database up to :data:`SCHEMA_VERSION`; returns the version
    it had. One ``BEGIN IMMEDIATE`` transaction, the version read again inside it, so two
    processes opening the same old project upgrade it once."""
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        old = int(row[0]) if row else 1
        for version in range(old + 1, SCHEMA_VERSION + 1):
            for stmt in MIGRATIONS[version]:
                db.execute(stmt)
        if old < SCHEMA_VERSION:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return old
