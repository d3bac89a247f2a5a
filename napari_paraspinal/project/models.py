"""The project's model registry: bundles copied in whole, checked as a loader checks them,
never overwritten; at most one model is active.

:meth:`.Project.register_model` and its siblings call these functions. A bundle is untrusted
input (it may come from anyone), so it is copied to a staging folder first (symbolic links
copied as links, never followed) and the copy is checked before it is renamed into place:
its card must load (:func:`.nets.bundle.load_card`: size cap, schema, hashes required), every
file it lists must match its SHA-256 (:func:`.nets.bundle.verify_bundle_files`), the weights
must match ``weights_sha256`` and be safetensors, and no file may be left unlisted. So a
project only ever registers a bundle that loads, and what it registered is what was checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.atomic import fsync_path, fsync_tree
from ..core.errors import InputError
from .records import ModelRow, ProjectError
from .schema import CARD, MODELS_DIR, WEIGHTS
from .store import SAFE_ID, STAGE, json_text, now_text

if TYPE_CHECKING:
    from ..nets.card import ModelCard
    from .store import Project


def register_model(project: Project, bundle_dir: str | os.PathLike[str],
                   model_id: str | None = None, parent: str | None = None,
                   active: bool = False) -> str:
    """What :meth:`.Project.register_model` does; returns the new model's id."""
    from ..nets.bundle import load_card

    src = Path(bundle_dir)
    if not src.is_dir():
        raise InputError(src, "not a model bundle folder")
    load_card(src)  # a folder that is no bundle is refused before anything is copied
    if model_id is not None and not SAFE_ID.match(model_id):
        raise ProjectError(project.root, f"model id {model_id!r} must be letters, digits, "
                                         "'_', '.' or '-' (at most 100)")
    models = project.root / MODELS_DIR
    models.mkdir(exist_ok=True)
    stage = models / f"{STAGE}{uuid.uuid4().hex}"
    try:
        shutil.copytree(src, stage, symlinks=True)
        card, digest = checked_bundle(stage, src)
        fsync_tree(stage)
        with project._transaction() as db:
            mid = model_id or new_model_id(project, card.name, card.version, src)
            target = models / mid
            if model_record(project, mid) is not None or target.exists():
                raise ProjectError(target, "a model with this id already exists")
            os.rename(stage, target)
            fsync_path(models)
            if active:
                db.execute("UPDATE models SET active = 0 WHERE active = 1")
            db.execute(
                "INSERT INTO models (id, path, card_json, parent, weights_sha256, "
                "created_at, active) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (mid, f"{MODELS_DIR}/{mid}", json_text(dataclasses.asdict(card)),
                 parent or card.parent, digest, now_text(), int(active)))
            project._log(db, None, "register_model", f"{mid}{' (active)' if active else ''}")
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return mid


def checked_bundle(folder: Path, shown: Path | None = None) -> tuple[ModelCard, str]:
    """The card and weights SHA-256 of a bundle that loads; an :class:`.InputError` (a
    :class:`.BundleError` for a bad card or file) naming ``shown`` (default: ``folder``)
    otherwise.

    Checks the card (:func:`.load_card`), every file it lists (:func:`.verify_bundle_files`),
    the weights (a regular safetensors file matching ``weights_sha256``), and that no other
    file is there: every file of a registered bundle is hashed.
    """
    from ..core.bundlefiles import BundleError, confined, sha256_regular
    from ..nets.bundle import MAX_WEIGHTS_BYTES, load_card, verify_bundle_files

    try:
        card = load_card(folder)
        verify_bundle_files(folder, card)
        if not os.path.lexists(folder / WEIGHTS):
            raise InputError(folder, f"not a model bundle: {WEIGHTS} is missing")
        weights = confined(folder, WEIGHTS, WEIGHTS)
        digest = sha256_regular(weights, folder, WEIGHTS, MAX_WEIGHTS_BYTES)
        if digest != card.weights_sha256:
            raise BundleError(folder, WEIGHTS, "the weights do not match the card's SHA-256 "
                                               "(corrupt or replaced file)")
        _check_safetensors(weights, folder)
        unlisted = _unlisted(folder, card)
        if unlisted:
            raise BundleError(folder, unlisted[0], f"is not listed in {CARD} files_sha256 "
                                                   "(every file of a bundle must be hashed)")
    except InputError as err:
        raise _naming(err, folder, shown or folder) from None
    return card, digest


def _check_safetensors(weights: Path, folder: Path) -> None:
    """Refuse weights that are not safetensors (only the header is read)."""
    from safetensors import safe_open

    from ..core.bundlefiles import BundleError

    try:
        with safe_open(str(weights), framework="numpy") as fh:
            list(fh.keys())
    except Exception as err:  # safetensors raises its own error types
        raise BundleError(folder, WEIGHTS, f"cannot read the weights: {err}") from None


def _unlisted(folder: Path, card: ModelCard) -> list[str]:
    """Files, links and special files in ``folder`` that the card does not hash."""
    listed = {CARD, WEIGHTS, *card.files_sha256}
    out = []
    for top, dirs, files in os.walk(folder):
        here = Path(top)
        for name in dirs:
            if (here / name).is_symlink():
                out.append((here / name).relative_to(folder).as_posix())
        for name in files:
            rel = (here / name).relative_to(folder).as_posix()
            if rel not in listed:
                out.append(rel)
    return sorted(out)


def _naming(err: InputError, stage: Path, src: Path) -> InputError:
    """``err`` about the staging copy, told of the bundle the person gave."""
    if stage == src:
        return err
    err.source = str(src)
    err.problem = err.problem.replace(str(stage), str(src))
    err.args = (f"{err.source}: {err.problem}",)
    return err


def new_model_id(project: Project, name: str, version: str | None, src: Path) -> str:
    """An unused id from the card's name and version (``name-vN``), safe as a folder name."""
    name = name or src.name
    base = f"{name}-v{version}" if version not in (None, "") else name
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_.")[:80] or "model"
    if not SAFE_ID.match(base):
        base = "model"
    taken = {r[0].casefold() for r in project.db.execute("SELECT id FROM models")}
    taken |= {p.name.casefold() for p in (project.root / MODELS_DIR).iterdir()}
    mid, n = base, 2
    while mid.casefold() in taken:
        mid, n = f"{base}_{n}", n + 1
    return mid


def model_record(project: Project, model_id: str) -> sqlite3.Row | None:
    """The database row of a registered model, or None."""
    return project.db.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()


def model_row(project: Project, d: sqlite3.Row) -> ModelRow:
    """A database row as a :class:`.ModelRow`."""
    return ModelRow(
        id=d["id"], relpath=d["path"], path=project.root / d["path"],
        card=json.loads(d["card_json"]), parent=d["parent"],
        weights_sha256=d["weights_sha256"], created_at=d["created_at"],
        active=bool(d["active"]))


def models(project: Project) -> list[ModelRow]:
    """Registered models, oldest first."""
    rows = project.db.execute("SELECT * FROM models ORDER BY rowid").fetchall()
    return [model_row(project, r) for r in rows]


def model(project: Project, model_id: str) -> ModelRow:
    """One registered model by id."""
    row = model_record(project, model_id)
    if row is None:
        raise ProjectError(project.root, f"no model {model_id!r} in this project")
    return model_row(project, row)


def active_model(project: Project) -> ModelRow | None:
    """The model used for new predictions, or None."""
    row = project.db.execute("SELECT * FROM models WHERE active = 1").fetchone()
    return None if row is None else model_row(project, row)


def activate(project: Project, model_id: str) -> None:
    """Make a registered model (any earlier version too) the one active model."""
    with project._transaction() as db:
        model(project, model_id)
        db.execute("UPDATE models SET active = 0 WHERE active = 1")
        db.execute("UPDATE models SET active = 1 WHERE id = ?", (model_id,))
        project._log(db, None, "activate", model_id)
