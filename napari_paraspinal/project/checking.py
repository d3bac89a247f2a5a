"""``project check`` and ``--repair``: compare the database with the files, say what was found.

The check looks at the database (SQLite integrity and foreign keys), every label version's
file (present, SHA-256 unchanged), every model's weights, every case's status and verified
labels against its versions, every case's source against its fingerprint (changed, missing,
or not fingerprinted), the batch workers' claims (held or stale), and leftover files. It
counts what it looked at so a clean report still says what "consistent" covered.

Repair only does what is safe without a person: leftovers set aside (never deleted), stale
claims removed, statuses recomputed, and sources of cases made before fingerprints existed
fingerprinted as they are now. A changed source is never accepted by repair; a person does
that with :func:`accept_sources` (``project check --accept-sources``).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

from ..core.atomic import sha256_of
from . import claims as claims_module
from .fingerprint import (
    CHANGED,
    INTACT,
    MISSING,
    NOT_FINGERPRINTED,
    SourceChecker,
    record_fingerprints,
)
from .records import CheckReport, LabelVersion
from .schema import LABELS_DIR, MODELS_DIR, ORPHANS_DIR, STATUS_OF_KIND, WEIGHTS
from .store import STAGE, Project, json_text, now_text, verified_of

_LISTED = 10  # case ids named in a one-line note before "…"


def check_project(project: Project, verify_hashes: bool = True) -> CheckReport:
    """What :meth:`.Project.check` does; ``verify_hashes`` False trusts file sizes and mtimes
    of sources and skips hashing label files (a quick look, used before a repair)."""
    report = CheckReport()
    with project._lock:
        db = project.db
        report.integrity = [r[0] for r in db.execute("PRAGMA integrity_check")
                            if r[0] != "ok"]
        report.foreign_keys = [f"{r[0]} row {r[1]} refers to a missing {r[2]} row"
                               for r in db.execute("PRAGMA foreign_key_check")]
        versions = [project._version_row(r) for r in db.execute(
            "SELECT * FROM label_versions ORDER BY case_id, version").fetchall()]
        models = project.models()
        cases = project.cases()
        held = claims_module.claims(project)
    for v in versions:
        what = f"{v.case_id} v{v.version} {v.kind} ({v.relpath})"
        if not v.path.is_file():
            report.missing_files.append(f"{what}: file is missing")
        elif verify_hashes and sha256_of(v.path) != v.sha256:
            report.hash_mismatches.append(f"{what}: file differs from its SHA-256")
    for m in models:
        weights = m.path / WEIGHTS
        if not weights.is_file():
            report.missing_files.append(f"model {m.id} ({m.relpath}): {WEIGHTS} missing")
        elif verify_hashes and sha256_of(weights) != m.weights_sha256:
            report.hash_mismatches.append(f"model {m.id}: {WEIGHTS} differs from its SHA-256")
    by_case: dict[str, list[LabelVersion]] = {}
    for v in versions:
        by_case.setdefault(v.case_id, []).append(v)
    for case in cases:
        mine = by_case.get(case.id, [])
        expected = STATUS_OF_KIND[mine[-1].kind] if mine else "new"
        if case.status not in ("failed", expected):
            report.inconsistent.append(f"case {case.id}: status {case.status!r} but its "
                                       f"labels make it {expected!r}")
        if case.verified_labels != verified_of(mine):
            report.inconsistent.append(f"case {case.id}: verified labels "
                                       f"{case.verified_labels} but its versions give "
                                       f"{verified_of(mine)}")
    counts = _check_sources(report, cases, verify_hashes)
    for claim in held:
        if claims_module.is_stale(claim):
            report.stale_claims.append(f"{claim} (its worker is gone)")
        else:
            report.notes.append(f"{claim} (a segment run is working on it)")
    _scan_leftovers(project, report, {v.relpath for v in versions},
                    {m.relpath for m in models})
    report.checked = {"cases": len(cases), "sources": len({(c.source, c.series_uid)
                                                           for c in cases}),
                      **counts, "label_versions": len(versions),
                      "hashes_verified": int(verify_hashes),
                      "models": len(models), "claims": len(held)}
    return report


def _check_sources(report: CheckReport, cases: list, full: bool) -> dict[str, int]:
    checker = SourceChecker(full)
    counts = {INTACT: 0, CHANGED: 0, MISSING: 0, NOT_FINGERPRINTED: 0}
    unprinted = []
    for case in cases:
        state = checker.state(case)
        counts[state.state] += 1
        if state.state in (CHANGED, MISSING):
            report.sources.append(str(state))
        elif state.state == NOT_FINGERPRINTED:
            unprinted.append(case.id)
    if unprinted:
        names = ", ".join(unprinted[:_LISTED]) + (", …" if len(unprinted) > _LISTED else "")
        report.notes.append(f"{len(unprinted)} case(s) not fingerprinted (added before "
                            f"sources were fingerprinted; --repair records their sources as "
                            f"they are now): {names}")
    return {f"sources_{k.replace(' ', '_')}": n for k, n in counts.items()}


def _scan_leftovers(project: Project, report: CheckReport, labels: set[str],
                    models: set[str]) -> None:
    root = project.root
    for p in root.iterdir():
        if p.name.startswith(STAGE):
            report.temp_files.append(p.name)
    label_root = root / LABELS_DIR
    for p in sorted(label_root.rglob("*")) if label_root.is_dir() else []:
        rel = p.relative_to(root).as_posix()
        if p.is_dir():
            continue
        if p.name.startswith("."):
            report.temp_files.append(rel)
        elif rel not in labels:
            report.orphan_files.append(rel)
    model_root = root / MODELS_DIR
    for p in sorted(model_root.iterdir()) if model_root.is_dir() else []:
        rel = p.relative_to(root).as_posix()
        if p.name.startswith("."):
            report.temp_files.append(rel)
        elif rel not in models:
            report.orphan_files.append(rel)


def repair_project(project: Project) -> CheckReport:
    """What :meth:`.Project.repair` does; the report's ``repaired`` lists every action."""
    report = check_project(project, verify_hashes=False)
    root = project.root
    done: list[str] = []
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    for rel in report.orphan_files:
        dest = root / ORPHANS_DIR / stamp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(root / rel, dest)
        done.append(f"moved orphan {rel} to {dest.relative_to(root).as_posix()}")
    for rel in report.temp_files:
        p = root / rel
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        done.append(f"removed temporary {rel}")
    done += claims_module.clear_stale(project)
    with project._transaction() as db:
        for case in project.cases() if report.inconsistent else []:
            expected = project._derived_status(db, case.id)
            status = case.status if case.status == "failed" else expected
            verified = project._derived_verified(db, case.id)
            if status != case.status or verified != case.verified_labels:
                db.execute("UPDATE cases SET status = ?, verified_labels_json = ?, "
                           "updated_at = ? WHERE id = ?",
                           (status, json_text(verified), now_text(), case.id))
                done.append(f"case {case.id}: status {status}, verified {verified}")
        if done:
            project._log(db, None, "repair", "; ".join(done))
    unprinted = [c.id for c in project.cases() if c.fingerprint is None]
    if unprinted:  # logged per case as "fingerprint" events
        done += record_fingerprints(project, unprinted, "repair")
    after = check_project(project)
    after.repaired = done
    return after


def accept_sources(project: Project) -> list[str]:
    """Record the current fingerprint of every changed source (a person confirmed that the
    case's labels still fit the image as it is now); returns a line per case."""
    checker = SourceChecker(full=True)
    changed = [c.id for c in project.cases() if checker.state(c).state == CHANGED]
    return record_fingerprints(project, changed, "changed source accepted")


def report_lines(report: CheckReport) -> list[str]:
    """The report as lines for a person: what was checked, each problem, note, leftover and
    repair, then the verdict."""
    c = report.checked
    lines = []
    if c:
        hashed = "hashed" if c.get("hashes_verified") else "present (not hashed)"
        lines.append(
            f"checked: {c['cases']} case(s) from {c['sources']} source file(s) or series; "
            f"case sources {c['sources_intact']} intact, {c['sources_changed']} changed, "
            f"{c['sources_missing']} missing, {c['sources_not_fingerprinted']} not "
            f"fingerprinted; {c['label_versions']} label version(s), files {hashed}; "
            f"{c['models']} model(s); {c['claims']} claim(s); database integrity "
            f"{'ok' if not report.integrity else 'FAILED'}")
    lines += [f"problem: {p}" for p in report.problems]
    if report.sources:
        lines.append("note: export leaves these cases out; once you know a changed source's "
                     "labels still fit, --accept-sources records it as it is now")
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"leftover: orphan file {p}" for p in report.orphan_files]
    lines += [f"leftover: temporary file {p}" for p in report.temp_files]
    lines += [f"leftover: stale claim {p}" for p in report.stale_claims]
    lines += [f"repaired: {r}" for r in report.repaired]
    leftovers = len(report.orphan_files) + len(report.temp_files) + len(report.stale_claims)
    if not report.ok:
        lines.append(f"{len(report.problems)} problem(s) found")
    elif leftovers:
        lines.append(f"consistent; {leftovers} harmless leftover(s) (--repair sets them "
                     "aside)")
    else:
        lines.append("consistent")
    return lines
