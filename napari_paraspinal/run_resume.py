"""Resuming a batch run: the cases a previous run in the folder finished are kept, not redone.

Every case that ends without failing leaves ``results/<case>.json`` beside its label map: its
table rows, its output files, the input files' sizes and modification times, and the settings
that decide its numbers (model weights' hash, slices, fat method, bias correction, ...). A
run with ``resume`` takes a case from there, untouched, when all of these still hold: same
source, same input files, same settings, every output file still present. Anything else (a
failed or unfinished case, an edited input, another model) is run again. A run without
``resume`` supersedes the whole folder as before (:mod:`.run_output`), results included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .core.atomic import write_text_atomic
from .run_output import writing

if TYPE_CHECKING:
    from .pipeline import CaseResult, RunConfig, Source
    from .segment import Model

RESULTS = "results"
FORMAT = "paraspinal-case/1"


def result_path(out_dir: Path, cid: str) -> Path:
    """Where a finished case's result is kept."""
    return Path(out_dir) / RESULTS / f"{cid}.json"


def settings_key(config: RunConfig, model: Model | None) -> dict:
    """What decides a case's numbers and files (not where it runs: device, cluster)."""
    return {
        "model_weights_sha256": model.card.weights_sha256 if model is not None else None,
        "inference": (None if model is None else
                      {"sides": model.sides, "mirror": model.mirror,
                       "precision": model.precision}),
        "slices": list(config.slices) if config.slices is not None else None,
        "spacing": list(config.spacing) if config.spacing is not None else None,
        "overlays": config.overlays,
        "labels_dir": str(config.labels_dir) if config.labels_dir is not None else None,
        "labels_files": (_fingerprint(Path(config.labels_dir))
                         if config.labels_dir is not None else None),
        "fat": asdict(config.fat),
        "n4": asdict(config.n4) if config.n4 is not None else None,
        "level": config.level,
        "level_anchors": [asdict(x) for x in config.level_anchors],
        "identifiers": config.identifiers,
        "bids": config.bids,
    }


def input_fingerprint(ref: Source) -> list:
    """Sizes and modification times of the files behind an input (water and fat for a
    Dixon pair; every file of a series folder)."""
    refs = [ref.water, ref.fat] if hasattr(ref, "water") else [ref]
    return [_fingerprint(Path(r.path)) for r in refs]


def save_result(result: CaseResult, ref: Source, config: RunConfig, model: Model | None,
                files: Sequence[Path]) -> Path:
    """Keep a finished case's result and the files it wrote (label map, overlays) for a
    later ``resume`` (atomic write)."""
    path = result_path(config.out_dir, result.case)
    data = {"format": FORMAT, "source": str(ref), "inputs": input_fingerprint(ref),
            "files": [_rel(f, config.out_dir) for f in files if Path(f).is_file()],
            "settings": _plain(settings_key(config, model)),
            "result": {"case": result.case, "source": result.source, "status": result.status,
                       "message": result.message, "rows": result.rows,
                       "outputs": {k: _rel(v, config.out_dir)
                                   for k, v in result.outputs.items()},
                       "label_status": result.label_status,
                       "identifiers": result.identifiers, "finished": result.finished}}
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(data, default=_json_default, indent=1))
    return path


@dataclass(frozen=True)
class Reused:
    """A finished case taken from the previous run, and its files that stay in place."""

    result: CaseResult
    files: tuple[Path, ...]


def reusable(refs: Sequence[Source], cids: Sequence[str], config: RunConfig,
             model: Model | None) -> dict[int, Reused]:
    """The cases (by position in ``refs``) whose kept result still holds (module doc)."""
    from .pipeline import CaseResult

    settings = _plain(settings_key(config, model))
    found: dict[int, Reused] = {}
    for n, (ref, cid) in enumerate(zip(refs, cids, strict=True)):
        try:
            data = json.loads(result_path(config.out_dir, cid).read_text(encoding="utf-8"))
            kept = data["result"]
            if (data.get("format") != FORMAT or data.get("source") != str(ref)
                    or data.get("inputs") != _plain(input_fingerprint(ref))
                    or data.get("settings") != settings or kept.get("status") == "failed"):
                continue
            outputs = {str(k): config.out_dir / str(v) for k, v in kept["outputs"].items()
                       if not str(k).startswith("bids_")}  # the new run writes BIDS anew
            files = [config.out_dir / str(f) for f in data["files"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if not all(_inside(config.out_dir, p) and p.exists()
                   for p in [*outputs.values(), *files]):
            continue
        result = CaseResult(case=cid, source=str(kept["source"]), status=str(kept["status"]),
                              message=str(kept.get("message", "")), rows=list(kept["rows"]),
                              outputs=outputs, label_status=str(kept["label_status"]),
                              identifiers=dict(kept.get("identifiers") or {}),
                            finished=str(kept.get("finished", "")))
        found[n] = Reused(result, (*files, result_path(config.out_dir, cid)))
    return found


def _fingerprint(path: Path) -> list:
    try:
        if path.is_dir():
            entries = []
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    p = Path(root) / name
                    st = p.stat()
                    entries.append([p.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns])
            return [str(path), entries]
        st = path.stat()
        return [str(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(path), None]


def _inside(folder: Path, path: Path) -> bool:
    """A kept path that stays inside the output folder (a result file is data, not trust)."""
    try:
        return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))
    except ValueError:
        return False


def _rel(path: Path, folder: Path) -> str:
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:
        return str(path)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _plain(value: object) -> object:
    """``value`` as it reads back from JSON (tuples as lists, numpy scalars as numbers)."""
    return json.loads(json.dumps(value, default=_json_default))
