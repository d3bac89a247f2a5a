"""``paraspinal bench real``: Dice of a model on the labelled real cases of the shared data.

Phantom benchmarks say how well a model fits its generator; these numbers say how it does
on real scans (zero-shot unless the model card says it was trained on the case). Dice is
pooled per structure over the slices of a series (sums of |P∩T|, |P| and |T|, so small
structures on end slices do not swing it) and also given as a mean of per-slice Dice.
A slice the chain refuses (``InputError``) scores as all-wrong and is counted, never dropped.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core.errors import InputError
from .core.labels import BY_VALUE, ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from .export import markdown_table, write_csv
from .jobs import ProgressFn, report
from .project.worklist import uncertainty_score
from .realdata import RealSeries, default_real_data_dir, read_series_slice, real_series
from .seg_qc import swapped_pairs
from .sides import DEFAULT as SIDES_DEFAULT

#: The structures scored, in column order (SP and DI are not labelled in any real case).
STRUCTURES: tuple[int, ...] = (PS_L, PS_R, MF_L, MF_R, ES_L, ES_R)


def slice_indices(spec: str, n: int) -> list[int]:
    """The slices ``spec`` names out of ``n``: ``"all"`` or ``"everyK"`` (0, K, 2K, ...)."""
    if spec == "all":
        return list(range(n))
    m = re.fullmatch(r"every([1-9][0-9]*)", spec)
    if m is None:
        raise ValueError(f"slices must be 'all' or 'everyK' (e.g. every4), not {spec!r}")
    return list(range(0, n, int(m.group(1))))


@dataclass
class DiceTally:
    """Overlap counts of some structures over slices: pooled and per-slice Dice."""

    values: tuple[int, ...]
    inter: dict[int, int] = field(default_factory=dict)
    pred: dict[int, int] = field(default_factory=dict)
    truth: dict[int, int] = field(default_factory=dict)
    per_slice: dict[int, list[float]] = field(default_factory=dict)
    slices: int = 0

    def __post_init__(self) -> None:
        for v in self.values:
            self.inter.setdefault(v, 0)
            self.pred.setdefault(v, 0)
            self.truth.setdefault(v, 0)
            self.per_slice.setdefault(v, [])

    def add(self, pred: np.ndarray | None, truth: np.ndarray) -> None:
        """Count one slice; ``pred=None`` is a failed slice (nothing predicted)."""
        self.slices += 1
        for v in self.values:
            t = truth == v
            p = np.zeros_like(t) if pred is None else pred == v
            i, np_, nt = int((p & t).sum()), int(p.sum()), int(t.sum())
            self.inter[v] += i
            self.pred[v] += np_
            self.truth[v] += nt
            # absent from both: nothing to score on this slice (NaN, skipped in the mean)
            self.per_slice[v].append(2.0 * i / (np_ + nt) if np_ + nt else float("nan"))

    def pooled(self) -> dict[int, float]:
        """``2 Σ|P∩T| / (Σ|P| + Σ|T|)`` per structure (NaN if never in either)."""
        return {v: (2.0 * self.inter[v] / (self.pred[v] + self.truth[v])
                    if self.pred[v] + self.truth[v] else float("nan")) for v in self.values}

    def slice_mean(self) -> dict[int, float]:
        """Mean over slices of the per-slice Dice, per structure (slices scoring NaN skipped)."""
        out = {}
        for v in self.values:
            d = [x for x in self.per_slice[v] if not np.isnan(x)]
            out[v] = float(np.mean(d)) if d else float("nan")
        return out


def seen_in_training(card_data: dict, case: str) -> bool:
    """Whether the model card's ``data`` mentions the case anywhere (then not zero-shot)."""
    return case in json.dumps(card_data)


def _mean(values: Sequence[float]) -> float | None:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else None


def _nan_to_none(v: float) -> float | None:
    return None if np.isnan(v) else float(v)


def uncertainty_agreement(scores: Sequence[float], dices: Sequence[float | None]
                          ) -> float | None:
    """Spearman correlation of the slices' uncertainty scores (the worklist's
    :func:`.project.worklist.uncertainty_score`) with their Dice: negative when the slices
    the model is least sure of are the ones it got wrong, which is what ordering a worklist
    by uncertainty relies on. None for fewer than 3 scored slices."""
    from scipy.stats import spearmanr

    pairs = [(u, d) for u, d in zip(scores, dices, strict=True) if d is not None]
    if len(pairs) < 3:
        return None
    rho = spearmanr(*zip(*pairs, strict=True)).statistic
    return None if np.isnan(rho) else float(rho)


def series_row(series: RealSeries, tally: DiceTally, flagged: int, failed: int,
               seconds: float, seen: bool) -> dict:
    """The table row of one series (Dice None for structures it does not annotate)."""
    n = tally.slices
    pooled, per_slice = tally.pooled(), tally.slice_mean()
    row: dict = {"case": series.case, "contrast": series.contrast, "slices": n}
    for v in STRUCTURES:
        row[BY_VALUE[v].short] = _nan_to_none(pooled[v]) if v in series.annotated else None
    row["mean"] = _mean([pooled[v] for v in series.annotated])
    row["mean_per_slice"] = _mean([per_slice[v] for v in series.annotated])
    row["flagged"] = f"{flagged} of {n}"
    row["failed"] = failed
    row["s_per_slice"] = seconds / n if n else None
    row["seen_in_training"] = seen
    return row


def bench_real(model_path: str | None = None, root: Path | None = None, slices: str = "all",
               device: str = "cpu", progress: ProgressFn | None = None,
               series: Sequence[RealSeries] | None = None,
               predictions: dict[tuple[str, str, int], np.ndarray] | None = None,
               sides: str = SIDES_DEFAULT, mirror: bool = True,
               unseen: Sequence[str] = ()) -> list[dict]:
    """One row per real series: pooled and per-slice Dice of the model, flagged slices
    (registration or segmentation QC), failed slices, slices with a left/right swap
    (``lr_swapped``: a left muscle on the patient's right of its right one), seconds per
    slice (see the module doc) and ``uncertainty_spearman`` (:func:`uncertainty_agreement`).

    ``sides`` and ``mirror`` as :func:`.segment.load_model` takes them. ``series`` restricts
    the run (default: every series found under ``root``); a given
    ``predictions`` dict receives each slice's labels under ``(case, contrast, k)``.
    ``unseen``: other bundles; a case the model was trained on is scored by the first of them
    that was not (leave-one-case-out), and the row's ``model`` says which scored it.
    Progress: stage ``score``, ``done`` slices of the series ``case``.
    """
    from .segment import load_model, segment_slice

    chosen = list(series) if series is not None else real_series(root)
    if not chosen:
        raise InputError(root or default_real_data_dir(), "no labelled real cases found here")
    models = [load_model(p, device=device, sides=sides, mirror=mirror)
              for p in (model_path, *unseen)]
    rows = []
    for s in chosen:
        model = next((m for m in models if not seen_in_training(m.card.data, s.case)),
                     models[0])
        ks = slice_indices(slices, s.n_slices())
        tally = DiceTally(STRUCTURES)
        flagged = failed = swaps = 0
        seconds = 0.0
        scores: list[float] = []  # the worklist's uncertainty score of each slice ...
        dices: list[float | None] = []  # ... and its mean Dice over the annotated muscles
        for n, k in enumerate(ks):
            image, truth = read_series_slice(s, k)
            t = time.perf_counter()
            try:
                seg = segment_slice(image, model)
            except InputError as err:
                seconds += time.perf_counter() - t
                failed += 1
                tally.add(None, truth)
                report(progress, "score", n + 1, len(ks), s.name,
                       f"{s.name} slice {k}: FAILED ({err.problem})")
                continue
            seconds += time.perf_counter() - t
            flagged += bool(seg.preprocessed.registration.flagged)
            swaps += bool(swapped_pairs(seg.labels, image.geometry))
            tally.add(seg.labels, truth)
            scores.append(uncertainty_score(seg.probabilities, seg.labels))
            dices.append(_mean([tally.per_slice[v][-1] for v in s.annotated]))
            if predictions is not None:
                predictions[(s.case, s.contrast, k)] = seg.labels
            report(progress, "score", n + 1, len(ks), s.name, f"{s.name} slice {k}")
        row = series_row(s, tally, flagged, failed, seconds,
                         seen_in_training(model.card.data, s.case))
        row["lr_swapped"] = swaps
        row["uncertainty_spearman"] = uncertainty_agreement(scores, dices)
        row["model"] = model.card.name
        rows.append(row)
    return rows


def write_report(rows: Sequence[dict], out_dir: str | os.PathLike[str], name: str,
                 header: str = "") -> tuple[Path, Path]:
    """``<name>.csv`` and ``<name>.md`` (``header`` above the table) in ``out_dir``."""
    from .core.atomic import write_text_atomic

    out = Path(out_dir)
    csv_path = write_csv(rows, out / f"{name}.csv")
    md_path = out / f"{name}.md"
    text = (header.rstrip() + "\n\n" if header else "") + markdown_table(rows)
    write_text_atomic(md_path, text)
    return csv_path, md_path


def write_real_report(rows: Sequence[dict], out_dir: str | os.PathLike[str],
                      header: str = "") -> tuple[Path, Path]:
    """``bench_real.csv`` and ``bench_real.md`` in ``out_dir``."""
    return write_report(rows, out_dir, "bench_real", header)
