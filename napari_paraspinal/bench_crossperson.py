"""Cross-person fine-tuning: correct a few slices of one person, fine-tune, score another.

This is the experiment a user runs: an annotator corrects at most ten slices of ONE person
and runs ``paraspinal finetune``; does the model then work on ANOTHER person? Everything
goes through the product's own path (a real project, :meth:`.Project.add`, corrections
saved with :meth:`.Project.save_labels`, :func:`.finetune_project`), and the test person is
scored on every slice with :func:`.bench_real` before and after, only on the structures
both people's labels annotate (the real pair here shares MF and ES only).

:func:`copy_labels_floor` is the reference without any model: one person's labels copied
onto the other's slices. A fine-tuned model that does not beat it has learnt no more than
"the muscles are about there".
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .bench_real import STRUCTURES, DiceTally, bench_real, seen_in_training, series_row
from .core.labels import BY_VALUE, ES_L, ES_R, MF_L, MF_R
from .core.orientation import canonical_reorientation, reorient_geometry
from .core.writers import write_image
from .export import markdown_table, write_csv
from .jobs import ProgressFn, report
from .project.finetune import finetune_project
from .project.finetune_config import FinetuneConfig
from .project.store import Project
from .realdata import RealSeries, read_series_slice

#: The structures the cross-person comparison scores (annotated in both real series).
SHARED: tuple[int, ...] = (MF_L, MF_R, ES_L, ES_R)


def shared_structures(a: RealSeries, b: RealSeries) -> tuple[int, ...]:
    """The structures of :data:`SHARED` that both series annotate (in that order)."""
    return tuple(v for v in SHARED if v in a.annotated and v in b.annotated)


def spaced_slices(n_total: int, n: int) -> list[int]:
    """``n`` slice indices spread evenly from the first to the last (fewer if n > n_total)."""
    if n < 1:
        raise ValueError("n_slices must be at least 1")
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, min(n, n_total))})


def _shared_mean(row: dict, shared: Sequence[int]) -> float | None:
    values = [row[BY_VALUE[v].short] for v in shared if row[BY_VALUE[v].short] is not None]
    return float(np.mean(values)) if values else None


def _refuse_seen(model_path: str | None, people: Sequence[RealSeries]) -> None:
    from .nets.bundle import load_card
    from .segment import default_model_path

    card = load_card(model_path or default_model_path())
    seen = sorted({s.case for s in people if seen_in_training(card.data, s.case)})
    if seen:
        raise ValueError(f"model {card.name} was trained on {', '.join(seen)}: the "
                         "cross-person experiment needs a model that saw neither person "
                         "(e.g. --model models/paraspinal-synth)")


def cross_person(train: RealSeries, test: RealSeries, model_path: str | None = None,
                 n_slices: int = 10, config: FinetuneConfig | None = None,
                 work_dir: Path | None = None,
                 progress: ProgressFn | None = None,
                 test_slices: str = "all") -> dict:
    """Fine-tune on ``n_slices`` corrected slices of ``train``, score on ``test``.

    The project lives in ``work_dir/project`` (kept) or a temporary folder (removed). Its
    starting model is ``model_path`` (registered and made active) or, as for a user, the
    shipped one. The corrections vouch only for the structures both series annotate.
    Returns names, slices used, the fine-tuning's status, reason and held-out Dice (active
    vs candidate), its wall-clock minutes, and :func:`.bench_real` rows of ``test``:
    ``before`` (the starting model), ``candidate`` (what fine-tuning produced, registered
    even when rejected) and ``after`` (the active model after the run), each with
    ``mean_shared`` (mean pooled Dice over the shared structures). ``test_slices`` is
    bench_real's slice spec (``"all"``, or ``"everyK"`` for a quick look). ``progress``
    gets the corrections (stage ``corrections``), the fine-tuning's events and the scoring's.

    A model trained on either person cannot measure how fine-tuning carries from one to the
    other: it is refused (ValueError) naming the person it saw.
    """
    _refuse_seen(model_path, (train, test))
    shared = shared_structures(train, test)
    if not shared:
        raise ValueError(f"{train.name} and {test.name} annotate no structure in common")
    with tempfile.TemporaryDirectory(prefix="crossperson-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        slice_dir = root / "slices"
        slice_dir.mkdir(parents=True, exist_ok=True)
        project = Project.init(root / "project")
        try:
            if model_path is not None:
                project.register_model(model_path, active=True)
            ks = spaced_slices(train.n_slices(), n_slices)
            for k in ks:
                image, truth = read_series_slice(train, k)
                path = write_image(image, slice_dir / f"{train.case}_{train.contrast}_k{k:03d}"
                                                      ".nii.gz")
                added = project.add([path])
                if added.failed:
                    raise added.failed[0]
                (cid,) = added.ids
                corrected = np.where(np.isin(truth, shared), truth, 0).astype(np.uint8)
                project.save_labels(cid, corrected, "corrected", labelled=shared)
            report(progress, "corrections", len(ks), len(ks), train.name,
                   f"{train.name}: {len(ks)} corrected slices {ks}; fine-tuning")
            start = time.perf_counter()
            result = finetune_project(project, config, progress=progress)
            minutes = (time.perf_counter() - start) / 60.0
            if result.model_id is None:
                raise RuntimeError(f"fine-tuning did not finish: {result.reason}")
            before_path = project.model(result.parent).path
            cand_path = project.model(result.model_id).path
            device = (config or FinetuneConfig()).device
            scored = {}
            for name, path in (("before", before_path), ("candidate", cand_path)):
                [row] = bench_real(model_path=str(path), series=[test], slices=test_slices,
                                   device=device, progress=progress)
                row["mean_shared"] = _shared_mean(row, shared)
                scored[name] = row
        finally:
            project.close()
    promoted = result.status == "promoted"
    return {
        "train": train.name, "test": test.name, "slices_used": ks,
        "shared": [BY_VALUE[v].short for v in shared],
        "status": result.status, "reason": result.reason,
        "heldout_active": result.active.mean if result.active else None,
        "heldout_candidate": result.candidate.mean if result.candidate else None,
        "minutes": minutes, "parent": result.parent, "candidate_model": result.model_id,
        "notes": list(result.notes),
        "before": scored["before"], "candidate": scored["candidate"],
        "after": scored["candidate"] if promoted else scored["before"],
    }


def _canonical(image_geometry, labels: np.ndarray, keep: Sequence[int]):
    """Labels (only ``keep``) in canonical orientation, the reorientation, the canonical
    geometry and the centroid (row, col) of their union (None when empty)."""
    r = canonical_reorientation(image_geometry)
    lab = r.apply(np.where(np.isin(labels, keep), labels, 0).astype(np.uint8))
    rows, cols = np.nonzero(lab)
    centre = (rows.mean(), cols.mean()) if rows.size else None
    return lab, r, reorient_geometry(image_geometry, r), centre


def copy_labels_floor(a: RealSeries, b: RealSeries,
                      predictions: dict[tuple[str, str, int], np.ndarray] | None = None
                      ) -> dict:
    """Dice of ``a``'s labels copied onto ``b``'s slices: the no-model reference.

    Slice ``k`` of ``b`` gets the slice of ``a`` at the same relative height
    (``round(k * (n_a - 1) / (n_b - 1))``). Both are put in canonical orientation (columns
    toward the patient's left, rows posterior), centred on the centroid of their shared
    structures' union, and each pixel of ``b`` takes ``a``'s label at the same in-plane mm
    offset from the centroid (nearest neighbour; background outside ``a``). Dice is pooled
    over ``b``'s slices for the structures both annotate; returns :func:`.series_row`'s
    row. ``predictions`` receives each copied map on ``b``'s native grid.
    """
    shared = shared_structures(a, b)
    n_a, n_b = a.n_slices(), b.n_slices()
    tally = DiceTally(STRUCTURES)
    start = time.perf_counter()
    for kb in range(n_b):
        ka = int(round(kb * (n_a - 1) / (n_b - 1))) if n_b > 1 else 0
        image_a, truth_a = read_series_slice(a, ka)
        image_b, truth_b = read_series_slice(b, kb)
        lab_a, _, geo_a, c_a = _canonical(image_a.geometry, truth_a, shared)
        lab_b, r_b, geo_b, c_b = _canonical(image_b.geometry, truth_b, shared)
        copied = np.zeros_like(lab_b)
        if c_a is not None and c_b is not None:
            rows, cols = np.indices(lab_b.shape)
            # spacing[0] runs along columns (patient left), spacing[1] along rows (posterior)
            ra = np.rint(c_a[0] + (rows - c_b[0]) * geo_b.spacing[1] / geo_a.spacing[1])
            ca = np.rint(c_a[1] + (cols - c_b[1]) * geo_b.spacing[0] / geo_a.spacing[0])
            ra, ca = ra.astype(np.intp), ca.astype(np.intp)
            inside = (ra >= 0) & (ra < lab_a.shape[0]) & (ca >= 0) & (ca < lab_a.shape[1])
            copied[inside] = lab_a[ra[inside], ca[inside]]
        native = r_b.undo(copied)
        tally.add(native, np.where(np.isin(truth_b, shared), truth_b, 0))
        if predictions is not None:
            predictions[(b.case, b.contrast, kb)] = native
    scored = dataclasses.replace(b, annotated=shared)
    return series_row(scored, tally, 0, 0, time.perf_counter() - start, False)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def crossperson_rows(results: Sequence[dict], floors: dict[str, dict] | None = None,
                     arrows: bool = False) -> list[dict]:
    """One table row per direction: fine-tuning facts, test Dice before and after (the
    candidate: what fine-tuning produced, active only when promoted) per shared structure
    and mean, and the copy-labels floor's mean of the test series (``floors`` by test name).

    ``arrows=True`` gives ``"before → after"`` text cells (Markdown); else numeric columns.
    """
    out = []
    for res in results:
        before, after = res["before"], res["candidate"]
        row: dict = {"train": res["train"], "test": res["test"],
                     "slices": len(res["slices_used"]), "minutes": round(res["minutes"], 2),
                     "status": res["status"], "heldout_active": res["heldout_active"],
                     "heldout_candidate": res["heldout_candidate"]}
        for short in [*res["shared"], "mean"]:
            key = "mean_shared" if short == "mean" else short
            if arrows:
                row[short] = f"{_fmt(before[key])} → {_fmt(after[key])}"
            else:
                row[f"{short}_before"], row[f"{short}_after"] = before[key], after[key]
        floor = (floors or {}).get(res["test"])
        row["floor_mean"] = None if floor is None else floor["mean"]
        out.append(row)
    return out


def write_crossperson_report(results: Sequence[dict], floors: dict[str, dict] | None,
                             out_dir: str | os.PathLike[str], header: str = ""
                             ) -> tuple[Path, Path]:
    """``bench_real_finetune.csv`` (numeric) and ``.md`` (``header`` above the table)."""
    from .core.atomic import write_text_atomic

    out = Path(out_dir)
    csv_path = write_csv(crossperson_rows(results, floors), out / "bench_real_finetune.csv")
    md_path = out / "bench_real_finetune.md"
    text = markdown_table(crossperson_rows(results, floors, arrows=True))
    write_text_atomic(md_path, (header.rstrip() + "\n\n" if header else "") + text)
    return csv_path, md_path


def run_both_ways(series: Sequence[RealSeries], model_path: str | None = None,
                  config: FinetuneConfig | None = None, n_slices: int = 10,
                  test_slices: str = "all", progress: ProgressFn | None = None
                  ) -> tuple[list[dict], dict[str, dict]]:
    """The two directions between ``musclemap_sub0001/fat`` and ``lpm_tum01/fat`` and the
    copy-labels floor of each test series (empty when either series is missing).

    A model trained on either person is refused (see :func:`cross_person`).
    """
    by_name = {s.name: s for s in series}
    pair = [by_name.get("musclemap_sub0001/fat"), by_name.get("lpm_tum01/fat")]
    if None in pair:
        return [], {}
    _refuse_seen(model_path, pair)
    results, floors = [], {}
    for train, test in (pair, pair[::-1]):
        results.append(cross_person(train, test, model_path, n_slices, config,
                                    progress=progress, test_slices=test_slices))
        floors[test.name] = copy_labels_floor(train, test)
    return results, floors
