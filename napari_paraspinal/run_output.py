"""The output folder of a batch run: a manifest, tables written as cases finish, and what a
rerun supersedes.

- ``run.json`` (the manifest) names the run, its inputs, what was skipped and every case with
  its status and output files. It is rewritten atomically when a case starts and after it
  ends, so after a kill it still tells which cases finished (``status`` stays ``running``).
- ``measurements.csv`` is rewritten atomically after every case: a kill loses only the case
  in progress, never a finished one, and never leaves half a table. ``measurements.xlsx`` is
  rewritten after a case too unless XLSX writing has taken more than :data:`XLSX_SHARE` of the
  run so far (very long tables), and always at the end; ``tables`` in the manifest says how
  many cases each table holds.
- A new run into the same folder first moves what it supersedes into
  ``superseded/<old run id>/``: the files the previous manifest lists, the old tables, and
  any file where the new run is about to write one. Nothing stale is left beside the new
  results and nothing is deleted (only the atomic writers' temporary leftovers of a kill).
  A resumed run (:mod:`.run_resume`) keeps the files of the cases it takes over in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .core.atomic import write_text_atomic
from .core.errors import InputError
from .core.io import describe_error
from .core.listing import path_problem
from .export import write_csv, write_xlsx

MANIFEST = "run.json"
CSV = "measurements.csv"
XLSX = "measurements.xlsx"
SUPERSEDED = "superseded"
#: Largest share of a run's time that rewriting the XLSX after each case may take.
XLSX_SHARE = 0.1
FORMAT = "paraspinal-run/1"
_RUN_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class OutputError(InputError):
    """An output file or folder cannot be written (full disk, name too long, no permission);
    the message names it and says why."""


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a failure to write ``path`` (an ``OSError``, or a writer library's
    ``RuntimeError``) into an :class:`OutputError` naming it."""
    try:
        yield
    except OSError as err:
        raise OutputError(path, f"could not be written: {path_problem(err)}") from err
    except RuntimeError as err:
        raise OutputError(path, f"could not be written: {describe_error(err)}") from err


class RunOutput:
    """The output folder of one run (see the module docstring)."""

    def __init__(self, folder: Path, manifest: dict) -> None:
        self.folder = folder
        self.manifest = manifest
        self._t0 = time.monotonic()
        self._xlsx_seconds = 0.0
        self._aside: dict = {}  # where superseded files go; in the manifest once one went
        self.previous_run_id: str | None = None

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @classmethod
    def start(cls, folder: str | os.PathLike[str], inputs: Sequence[str],
              skipped: Sequence[str], keep: Sequence[Path] = ()) -> RunOutput:
        """Make (or check) the folder, move the previous run's files aside (except those in
        ``keep``: cases a resumed run takes over) and write the new manifest;
        :class:`OutputError` when the folder cannot be used."""
        folder = make_output_folder(folder)
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
        out = cls(folder, {"format": FORMAT, "run_id": run_id, "status": "running",
                           "started": _now(), "finished": None, "inputs": list(inputs),
                           "skipped": list(skipped), "superseded": None, "tables": {},
                           "cases": {}})
        out._supersede_previous({out._rel(p) for p in keep})
        out._save()
        return out

    def case_reused(self, cid: str, source: str, files: Sequence[Path], status: str,
                    message: str, rows: int) -> None:
        """Record a case taken over from the previous run, its files left in place."""
        rels = [self._rel(p) for p in files]
        self.manifest["cases"][cid] = {"source": source, "status": status, "started": None,
                                       "planned": rels, "outputs": rels, "message": message,
                                       "rows": rows, "finished": _now(),
                                       "reused_from": self.previous_run_id}

    def case_started(self, cid: str, source: str, planned: Sequence[Path]) -> None:
        """Record a case about to run and the files it may write; a file already there
        (from a run without a manifest) is moved aside first."""
        rels = [self._rel(p) for p in planned]
        self.manifest["cases"][cid] = {"source": source, "status": "running",
                                       "started": _now(), "planned": rels, "outputs": []}
        self._move_aside([r for r in rels if (self.folder / r).exists()])
        self._save()

    def run_files(self, paths: Sequence[Path]) -> None:
        """Record files the run writes once for the whole folder (the BIDS dataset's, see
        :mod:`.bids`), so the next run moves them aside; any already there is moved first."""
        rels = [self._rel(p) for p in paths]
        self.manifest["files"] = rels
        self._move_aside([r for r in rels if (self.folder / r).exists()])
        self._save()

    def case_finished(self, cid: str, status: str, message: str, rows: int) -> None:
        """Record how a case ended (saved with the next tables). A failed case's partial
        outputs are removed: they are this run's (older ones were moved aside)."""
        entry = self.manifest["cases"][cid]
        present = [r for r in entry["planned"] if (self.folder / r).is_file()]
        if status == "failed":
            for rel in present:
                with contextlib.suppress(OSError):
                    (self.folder / rel).unlink()
            present = []
        entry.update(status=status, message=message, rows=rows, outputs=present,
                     finished=_now())

    def write_tables(self, sheets: Mapping[str, Sequence[Mapping]], final: bool = False
                     ) -> None:
        """Rewrite the tables from every finished case (CSV always; XLSX when cheap enough
        or ``final``), then the manifest saying what they hold."""
        done = sum(1 for c in self.manifest["cases"].values() if c["status"] != "running")
        with writing(self.folder / CSV):
            write_csv(sheets["measurements"], self.folder / CSV)
        self.manifest["tables"][CSV] = {"cases": done, "updated": _now()}
        if final or self._xlsx_seconds <= XLSX_SHARE * (time.monotonic() - self._t0):
            t = time.monotonic()
            with writing(self.folder / XLSX):
                write_xlsx(sheets, self.folder / XLSX)
            self._xlsx_seconds += time.monotonic() - t
            self.manifest["tables"][XLSX] = {"cases": done, "updated": _now()}
        self._save()

    def finish(self, sheets: Mapping[str, Sequence[Mapping]], status: str) -> None:
        """Write the final tables and mark the run ``complete`` (or ``cancelled``)."""
        self.manifest.update(status=status, finished=_now())
        self.write_tables(sheets, final=True)

    # ---------------------------------------------------------------- internals

    def _save(self) -> None:
        with writing(self.folder / MANIFEST):
            write_text_atomic(self.folder / MANIFEST, json.dumps(self.manifest, indent=1))

    def _rel(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.folder).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def _supersede_previous(self, keep: set[str]) -> None:
        """Move the previous run's files (by its manifest) and any old tables aside, except
        those in ``keep``."""
        old = _read_manifest(self.folder / MANIFEST)
        rels = {CSV, XLSX, MANIFEST}
        if old is not None:
            for case in old.get("cases", {}).values():
                if isinstance(case, dict):
                    rels.update(str(r) for key in ("planned", "outputs")
                                for r in case.get(key) or [])
            if isinstance(old.get("files"), list):
                rels.update(str(r) for r in old["files"])
        old_id = old.get("run_id") if old else None
        name = old_id if isinstance(old_id, str) and _RUN_ID.match(old_id) else None
        self.previous_run_id = name
        self._aside = {
            "run_id": name, "status": old.get("status") if old else "unknown (no manifest)",
            "moved_to": f"{SUPERSEDED}/{name or 'unrecorded-' + self.run_id}", "files": 0}
        self._move_aside(sorted(r for r in rels - keep if _inside(r)))

    def _move_aside(self, rels: Sequence[str]) -> None:
        """Move these files (relative to the folder) into the superseded folder."""
        info = self._aside
        for rel in rels:
            src = self.folder / rel
            _remove_leftovers(src)
            if not (src.is_file() or src.is_symlink()):
                continue
            dst = self.folder / info["moved_to"] / rel
            with writing(dst):
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
            info["files"] += 1
            self.manifest["superseded"] = info


def make_output_folder(folder: str | os.PathLike[str]) -> Path:
    """Create the output folder (and its parents); :class:`OutputError` saying why not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(folder, "is a file, not a folder: choose another output "
                                  "folder") from None
    except OSError as err:
        raise OutputError(folder, "cannot be used as the output folder: "
                                  f"{path_problem(err)}") from None
    return folder


def _read_manifest(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _inside(rel: str) -> bool:
    """A relative path that stays inside the output folder (a manifest is data, not trust)."""
    p = Path(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and p.parts[0] != SUPERSEDED


def _remove_leftovers(target: Path) -> None:
    """Temporary files of an atomic write of ``target`` that a kill left behind."""
    name = Path(target.name)
    prefix, suffix = f".{name.stem}.", "".join(name.suffixes) or ".tmp"
    with contextlib.suppress(OSError):
        for p in target.parent.glob(f".{glob_escape(name.stem)}.*"):
            rest = p.name[len(prefix):]
            if rest.endswith(suffix) and len(rest) == 8 + len(suffix):
                p.unlink()


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters made literal."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
