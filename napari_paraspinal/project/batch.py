"""Batch work on a project: segment its new cases, and measure every case for the spreadsheet.

Segmentation adds an *automatic* label version per case with the project's active model (the
shipped model is registered and activated first when the project has none), records the level,
the registration QC and the uncertainty score (:mod:`.worklist`), and stores the measurements.
Cases a person corrected or verified are never segmented again: their work stays the latest
version. A case the chain cannot use is marked failed with the reason, and the batch goes on.

Several runs may work on one project at once (two ``project segment`` commands, the napari
widget, a person saving corrections): each case is claimed before it is segmented and its
automatic version saved by compare-and-set (:mod:`.claims`), so runs split the cases, none is
segmented twice, and a version a person saved meanwhile stays the latest. A case whose source
changed or vanished since it was added (:mod:`.fingerprint`) is marked failed, not segmented;
export measures the others and lists it on an ``excluded`` sheet.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..core.errors import InputError
from ..fat import FatConfig
from ..jobs import Cancel, ProgressFn, cancelled, report
from ..measure import geometry_columns, measure_slice
from ..plausibility import check_row
from ..preprocess.chain import UNKNOWN
from ..preprocess.n4 import N4Config
from ..provenance import provenance_row
from .claims import Claims
from .effort import effort
from .fingerprint import SourceChecker
from .records import StaleVersionError
from .schema import HUMAN_KINDS
from .store import Project
from .worklist import set_uncertainty, uncertainty_score


@dataclass
class BatchResult:
    """Which cases were segmented, which failed (with the reason), which were left alone."""

    segmented: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # not_taken ones included
    cancelled: bool = False
    #: listed but left to others: claimed by another worker, or changed meanwhile (why)
    not_taken: dict[str, str] = field(default_factory=dict)


def active_model_id(project: Project) -> str:
    """The active model's id; registers and activates the shipped model if there is none."""
    active = project.active_model()
    if active is not None:
        return active.id
    from ..segment import default_model_path

    return project.register_model(default_model_path(), active=True)


def segment_project(project: Project, statuses: Sequence[str] = ("new", "failed"),
                    device: str = "auto", level: str | None = None,
                    fat: FatConfig | None = None, progress: ProgressFn | None = None,
                    cancel: Cancel | None = None, client=None  # noqa: ANN001
                    ) -> BatchResult:
    """Segment the cases in ``statuses`` with the active model; save, measure, flag.

    ``level`` None uses each case's recorded level, else detects it. ``corrected`` and
    ``verified`` cases are refused as statuses: a correction is never buried under a new
    automatic version. With a Dask ``client`` (:func:`..cluster.open_client`) the cases are
    segmented and measured on its workers; reading, claims and saving stay here, so the
    project's store is only ever written by this process. Progress: stage ``segment``
    (``done`` cases of ``total``, ``case`` the one starting, or on a cluster the one just
    finished), then ``done``; ``cancel`` stops between cases.
    """
    protected = {"corrected", "verified"} & set(statuses)
    if protected:
        raise ValueError(f"cases that are {sorted(protected)} are never re-segmented")
    model_id = active_model_id(project)
    model_path = str(project.model(model_id).path)
    result, todo = BatchResult(), []
    for case in project.cases():
        latest = project.latest_version(case.id)
        if case.status not in statuses or (latest is not None and latest.kind in HUMAN_KINDS):
            result.skipped.append(case.id)  # a failed case a person labelled stays theirs
        else:
            todo.append((case, 0 if latest is None else latest.version))
    claims, sources = Claims(project), SourceChecker(full=True)

    def prepare(case, seen: int):  # noqa: ANN001, ANN202
        """The case's image, claimed; None when it is not this run's to segment."""
        why = claims.claim(case.id, statuses, seen)
        if why is not None:
            result.skipped.append(case.id)
            result.not_taken[case.id] = why
            return None
        try:
            state = sources.state(case)
            if not state.usable:
                raise InputError(state.source, f"source {state.state}: {state.detail}")
            return project.read_image(case.id, sources)  # hashed once, just above
        except InputError as err:
            _store(project, case.id, seen, err.problem, model_id, result)
            claims.release(case.id)
            return None

    def store(case, seen: int, outcome) -> None:  # noqa: ANN001
        try:
            _store(project, case.id, seen, outcome, model_id, result)
        finally:
            claims.release(case.id)

    if client is None:
        from ..segment import load_model

        model = load_model(model_path, device) if todo else None  # checked once per batch
        for n, (case, seen) in enumerate(todo):
            if cancelled(cancel):
                result.cancelled = True
                break
            report(progress, "segment", n, len(todo), case.id)
            image = prepare(case, seen)
            if image is not None:
                store(case, seen, segment_and_measure(image, level or case.level or "auto",
                                                      model, fat))
    else:
        _on_cluster(client, todo, prepare, store, claims.release, level, model_path, device,
                    fat, result, progress, cancel)
    report(progress, "done", len(result.segmented) + len(result.failed), len(todo),
           message="done")
    return result


def segment_and_measure(image, level: str, model, fat: FatConfig | None  # noqa: ANN001
                        ) -> dict | str:
    """One case's labels, level, QC and measurements, or the problem that stopped it (plain
    data, no store: what a cluster worker sends back)."""
    from ..segment import segment_slice

    try:
        seg = segment_slice(image, model, level)
    except InputError as err:
        return err.problem
    reg = seg.preprocessed.registration
    measured = measure_slice(image, seg.labels, fat, bias=seg.preprocessed.bias)
    return {"labels": seg.labels, "level": reg.level, "qc": reg.qc_columns(),
            "row": measured.row,
            "uncertainty": uncertainty_score(seg.probabilities, seg.labels)}


def _worker_task(image, level: str, model_path: str, device: str,  # noqa: ANN001
                 fat: FatConfig | None) -> dict | str:
    """:func:`segment_and_measure` on a Dask worker, its model loaded once per process."""
    from ..cluster import cached_model

    return segment_and_measure(image, level, cached_model(model_path, device), fat)


def _store(project: Project, cid: str, seen: int, outcome: dict | str, model_id: str,
           result: BatchResult) -> None:
    """Save a case's outcome: an automatic version by compare-and-set (a version a person
    saved meanwhile stays the latest), or its failure."""
    try:
        if isinstance(outcome, str):
            project.set_status(cid, "failed", outcome, expect_version=seen)
            result.failed[cid] = outcome
            return
        version = project.save_labels(cid, outcome["labels"], "automatic", model_id=model_id,
                                      expect_version=seen)
    except StaleVersionError as err:  # a person saved a version meanwhile: theirs stays
        result.skipped.append(cid)
        result.not_taken[cid] = err.problem
        return
    if outcome["level"] != UNKNOWN:
        project.set_level(cid, outcome["level"])
    project.set_qc(cid, outcome["qc"])
    set_uncertainty(project, cid, outcome.get("uncertainty"))
    project.save_measurements(cid, version.id, outcome["row"])
    result.segmented.append(cid)


def _on_cluster(client, todo, prepare, store, release, level, model_path, device,  # noqa: ANN001
                fat, result: BatchResult, progress: ProgressFn | None, cancel: Cancel | None
                ) -> None:
    """The cases as Dask tasks (see :func:`segment_project`); a lost worker fails its case."""
    from distributed import as_completed

    futures = {}
    for case, seen in todo:
        image = prepare(case, seen)
        if image is not None:
            futures[client.submit(_worker_task, image, level or case.level or "auto",
                                  model_path, device, fat, pure=False)] = (case, seen)
    done = 0
    for future in as_completed(futures):
        case, seen = futures.pop(future)
        try:
            outcome = future.result()
        except Exception as err:  # noqa: BLE001  a lost worker or a bug: this case only
            outcome = f"unexpected error on a worker ({type(err).__name__}: {err})"
        store(case, seen, outcome)
        done += 1
        report(progress, "segment", done, len(todo), case.id)
        if cancelled(cancel):
            result.cancelled = True
            for f, (other, _) in futures.items():  # not run: unclaimed, left as they were
                f.cancel()
                release(other.id)
                result.skipped.append(other.id)
            break


def project_sheets(project: Project, fat: FatConfig | None = None,
                   n4: N4Config | None = None) -> dict[str, list[dict]]:
    """The ``measurements`` and ``provenance`` rows of every case with a label version.

    Each case is measured on its latest version (automatic, corrected or verified: the
    ``label_status`` column says which), on its native grid, fat on N4-corrected intensities.
    Each row also has the case's ``uncertainty`` score (:mod:`.worklist`) and a person's
    effort on it, ``edit_pixels``, ``edit_mm2`` and ``seconds_open`` (:mod:`.effort`).
    A case whose source changed or vanished since it was added, or whose labels or image
    cannot be read, is not measured: it is listed with the reason on an ``excluded`` sheet
    (present only then) and in a warning, and the other cases are still measured.
    """
    fat = fat or FatConfig()
    n4 = n4 if n4 is not None else N4Config()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows, provenance, excluded = [], [], []
    sources = SourceChecker(full=True)
    for case in project.cases():
        latest = project.latest_version(case.id)
        if latest is None:
            continue
        state = sources.state(case)
        try:
            if not state.usable:
                raise InputError(state.source, f"source {state.state}: {state.detail}")
            labels, version = project.latest_labels(case.id)
            image = project.read_image(case.id, sources)
        except InputError as err:
            excluded.append({"case": case.id, "label_status": latest.kind,
                             "label_version": latest.version, "source": str(case.ref),
                             "problem": err.problem})
            continue
        measured = measure_slice(image, labels, fat, n4=n4)
        model = project.model(version.model_id) if version.model_id else None
        rows.append(check_row({"case": case.id, "label_status": version.kind,
                               "label_version": version.version, "level": case.level or UNKNOWN,
                               "registration_flagged":
                                   case.qc_flags.get("registration_flagged"),
                               "registration_check": case.qc_flags.get("registration_check",
                                                                       ""),
                               "uncertainty": "" if case.uncertainty is None else
                                   round(case.uncertainty, 4),
                               **effort(project, case.id).columns(),
                               **geometry_columns(image.geometry), **measured.row},
                              image.geometry))  # the plausibility flags of `run`
        provenance.append(provenance_row(
            {"case": case.id, "source": str(case.ref),
             "source_sha256": case.fingerprint.sha256 if case.fingerprint else "",
             "status": case.status, "message": case.message,
             "labels": version.relpath, "label_status": version.kind,
             "label_version": version.version, "labels_sha256": version.sha256,
             "verified_labels": ",".join(str(v) for v in case.verified_labels),
             "model": model.id if model else "",
             "model_weights_sha256": model.weights_sha256 if model else "",
             "preprocessing": json.dumps(model.card.get("preprocessing", {})) if model else "",
             "qc_flags": json.dumps(case.qc_flags), "time": stamp},
            n4, fat, labels_saved=version.created_at, labels_author=version.author or "",
            source_check=state.state))
    sheets = {"measurements": rows, "provenance": provenance}
    if excluded:
        sheets["excluded"] = excluded
        warnings.warn(f"{len(excluded)} case(s) not measured (listed on the 'excluded' sheet): "
                      + "; ".join(f"{r['case']}: {r['problem']}" for r in excluded),
                      stacklevel=2)
    return sheets
