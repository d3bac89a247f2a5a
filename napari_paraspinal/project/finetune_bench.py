"""``paraspinal bench finetune``: does fine-tuning on a few corrected cases fix a domain shift?

The shipped model was trained on T2-weighted phantoms. :data:`SHIFTS` are phantom settings it
never saw (another contrast, heavy noise, strong bias, extreme fatty infiltration);
:func:`bench_shifts` measures how it does on each. On the chosen shift (default
``dixon_water``: a Dixon water image, fat dark and muscle bright, where the shipped model
fails, and which is what the real LPM case in ``shared/data`` is) :func:`bench_finetune`
plays the user's part: it makes a project, adds ``n_train`` shifted phantoms, saves their
true labels as *corrected* versions, runs :func:`.finetune.finetune_project`, and scores the
model before and the candidate after on ``n_test`` other shifted phantoms with
:func:`..segment.segment_slice` (native-grid Dice against the phantoms' exact labels).
Optionally also on unshifted T2w phantoms, to show what was (not) forgotten.

:func:`bench_finetune_real` does the same on the real labelled cases of ``shared/data`` when
that folder is there: train on some slices of one case with partial labels (MF and ES only),
test on other slices.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.labels import BY_VALUE, ES_L, ES_R, MF_L, MF_R
from ..jobs import ProgressFn, report
from ..nets.metrics import dice_per_label
from ..phantom import LEVELS, PhantomCase, PhantomConfig, generate_phantom
from .finetune import FinetuneResult, finetune_project
from .finetune_config import FinetuneConfig
from .store import Project

#: Phantom settings the shipped model was not trained on (keyword arguments of PhantomConfig).
SHIFTS: dict[str, dict[str, Any]] = {
    "dixon_water": {"contrast": "dixon_water"},
    "dixon_fat": {"contrast": "dixon_fat"},
    "T1w": {"contrast": "T1w"},
    "heavy_noise": {"noise": (0.2, 0.3)},
    "strong_bias": {"bias_strength": (0.6, 0.8)},
    "fatty": {"fat_infiltration": (0.8, 1.0)},
}
DEFAULT_SHIFT = "dixon_water"
TRAIN_SEED = 620_000
TEST_SEED = 621_000
ORIGINAL_SEED = 622_000
TARGET_GAIN = 0.05
TARGET_DICE = 0.90


@dataclass
class FinetuneBench:
    """Per-label Dice before and after (``rows``) and the headline numbers (``summary``)."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    result: FinetuneResult | None = None
    original: list[dict[str, Any]] = field(default_factory=list)


def shifted_case(shift: str, seed: int, level: str) -> PhantomCase:
    """One phantom of a named shift (``"T2w"``: the shipped model's own domain)."""
    kwargs = {} if shift == "T2w" else SHIFTS[shift]
    return generate_phantom(seed, PhantomConfig(level=level, **kwargs))


def score_models(models: Sequence[Any], shift: str, n: int, seed: int,
                 progress: ProgressFn | None = None) -> list[list[dict]]:
    """Native-grid Dice per label of each model on ``n`` phantoms (``segment_slice``;
    progress: stage ``score``, one step per phantom).

    A slice the chain refuses (e.g. no body found in heavy noise) scores 0 for every label
    it has, and its dict gets ``"failed": True``.
    """
    from ..core.errors import InputError
    from ..segment import segment_slice

    out: list[list[dict]] = [[] for _ in models]
    for k in range(n):
        level = LEVELS[k % 2]
        case = shifted_case(shift, seed + k, level)
        for scores, model in zip(out, models, strict=True):
            try:
                seg = segment_slice(case.image, model, level)
            except InputError:
                failed = dice_per_label(np.zeros_like(case.labels), case.labels)
                scores.append({**failed, "failed": True})
                continue
            scores.append(dice_per_label(seg.labels, case.labels))
        report(progress, "score", k + 1, n)
    return out


def _case_mean(dice: dict) -> float:
    """A case's mean Dice over the labels it has."""
    return float(np.nanmean([v for k, v in dice.items() if k in BY_VALUE]))


def _mean_case(scores: list[dict]) -> float:
    """Mean over cases of each case's mean Dice over the labels it has."""
    return float(np.mean([_case_mean(d) for d in scores]))


def _per_label(scores: list[dict]) -> dict[str, float]:
    return {BY_VALUE[v].short: float(np.nanmean([d[v] for d in scores])) for v in BY_VALUE}


def bench_shifts(names: Sequence[str] | None = None, n: int = 6, seed: int = TEST_SEED,
                 model_path: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The shipped model's native-grid Dice on ``n`` phantoms of each shift (and T2w)."""
    from ..segment import load_model

    model = load_model(model_path, device="cpu")
    rows = []
    for name in names or ["T2w", *SHIFTS]:
        t = time.perf_counter()
        (scores,) = score_models([model], name, n, seed)
        means = [_case_mean(d) for d in scores]
        rows.append({"shift": name, "cases": n, "mean_dice": float(np.mean(means)),
                     "min_case_dice": float(np.min(means)),
                     "failed": sum(bool(d.get("failed")) for d in scores),
                     "seconds_per_case": (time.perf_counter() - t) / n})
    return rows


def bench_finetune(out_dir: str | os.PathLike[str] | None = None, n_train: int = 10,
                   n_test: int = 20, shift: str = DEFAULT_SHIFT,
                   config: FinetuneConfig | None = None, seed: int = TRAIN_SEED,
                   n_original: int = 10, progress: ProgressFn | None = None
                   ) -> FinetuneBench:
    """Fine-tune on ``n_train`` corrected shifted phantoms; Dice on ``n_test`` others.

    The project is made in ``out_dir`` (kept) or a temporary folder (removed). Train phantoms
    use seeds ``seed + k``, test phantoms ``TEST_SEED + k``, T2w phantoms for the forgetting
    check (``n_original`` of them) ``ORIGINAL_SEED + k``; levels alternate. ``progress``
    gets the corrections (stage ``corrections``), the fine-tuning's events and its outcome
    (stage ``finetuned``).
    """
    from ..core.writers import write_image
    from ..segment import load_model

    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {sorted(SHIFTS)}, got {shift!r}")

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        project = Project.init(folder / "project")
        try:
            images = folder / "images"
            for k in range(n_train):
                level = LEVELS[k % 2]
                case = shifted_case(shift, seed + k, level)
                path = write_image(case.image, images / f"{shift}_{seed + k}.nii.gz")
                (cid,) = project.add([path], level=level).ids
                project.save_labels(cid, case.labels, "corrected")
            report(progress, "corrections", n_train, n_train,
                   message=f"{n_train} corrected {shift} cases in {project.root}")
            result = finetune_project(project, config, progress=progress)
            report(progress, "finetuned", 1, 1, message=f"fine-tuned in {result.seconds:.0f} "
                                                        f"s: {result.status} ({result.reason})")
            before = load_model(project.model(result.parent).path, device="cpu")
            after = load_model(project.model(result.model_id).path, device="cpu")
            t = time.perf_counter()
            shifted = score_models([before, after], shift, n_test, TEST_SEED)
            eval_seconds = time.perf_counter() - t
            original = (score_models([before, after], "T2w", n_original, ORIGINAL_SEED)
                        if n_original else None)
        finally:
            project.close()
    rows = _rows(*shifted)
    dice_before, dice_after = _mean_case(shifted[0]), _mean_case(shifted[1])
    gain = dice_after - dice_before
    summary = {
        "shift": shift, "train_cases": n_train, "test_cases": n_test,
        "dice_before": dice_before, "dice_after": dice_after, "gain_points": 100.0 * gain,
        "target_met": bool(gain >= TARGET_GAIN or dice_after >= TARGET_DICE),
        "finetune_seconds": result.seconds, "test_seconds": eval_seconds,
        "total_seconds": time.perf_counter() - start, "status": result.status,
        "heldout_before": result.active.mean, "heldout_after": result.candidate.mean,
        "replay_check_before": result.replay_active, "replay_check_after": result.replay_candidate,
        "test_failed_before": sum(bool(d.get("failed")) for d in shifted[0]),
        "test_failed_after": sum(bool(d.get("failed")) for d in shifted[1]),
        "epochs": len(result.history), "train_split": len(result.train_cases),
        "heldout_split": len(result.heldout_cases), "replay": result.replay,
    }
    original_rows = []
    if original is not None:
        original_rows = _rows(*original)
        summary["original_before"] = _mean_case(original[0])
        summary["original_after"] = _mean_case(original[1])
    return FinetuneBench(rows, summary, result, original_rows)


def _rows(before: list[dict], after: list[dict]) -> list[dict[str, Any]]:
    b, a = _per_label(before), _per_label(after)
    rows = [{"label": k, "before": b[k], "after": a[k], "change_points": 100 * (a[k] - b[k])}
            for k in b]
    mb, ma = _mean_case(before), _mean_case(after)
    rows.append({"label": "mean", "before": mb, "after": ma, "change_points": 100 * (ma - mb)})
    return rows


# --------------------------------------------------------------------------- real data

#: Label values of the real LPM case (``lpm_tum01/labels.nii.gz``) in ours (shared/data/README).
LPM_LABELS = {1: ES_R, 2: MF_R, 3: MF_L, 4: ES_L}


def bench_finetune_real(data_dir: str | os.PathLike[str] = "../shared/data",
                        out_dir: str | os.PathLike[str] | None = None,
                        train_slices: Sequence[int] = (4, 8, 12, 16, 20, 24),
                        test_slices: Sequence[int] = (6, 10, 14, 18, 22),
                        config: FinetuneConfig | None = None,
                        progress: ProgressFn | None = None) -> FinetuneBench | None:
    """Fine-tune on slices of the real LPM Dixon-water case (MF and ES only); test on others.

    None when ``data_dir`` has no ``lpm_tum01`` case. The labels (1 ES right, 2 MF right,
    3 MF left, 4 ES left; left/right from the header's orientation, see the folder's README)
    are mapped to ours and saved as corrected versions vouching for MF and ES only, so the
    other structures are unknown, not background. Dice is over MF and ES on the test slices.
    Slices of one person are not independent cases: the numbers show the mechanism on real
    images, not a validated gain. ``progress`` gets the corrections (stage ``corrections``)
    and the fine-tuning's outcome (stage ``finetuned``).
    """
    import nibabel as nib

    from ..core.io import InputRef, read_labels, read_slice
    from ..segment import load_model, segment_slice

    source = Path(data_dir) / "lpm_tum01"
    if not (source / "water.nii.gz").is_file() or not (source / "labels_water_header.nii.gz"
                                                      ).is_file():
        return None

    start = time.perf_counter()
    theirs = nib.load(source / "labels_water_header.nii.gz")
    raw = np.asarray(theirs.dataobj).astype(int)
    lut = np.zeros(int(raw.max()) + 1, np.int16)
    for value, ours in LPM_LABELS.items():
        lut[value] = ours
    vouched = sorted(LPM_LABELS.values())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(out_dir) if out_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        mapped = folder / "labels_ours.nii.gz"  # same grid and header, our label values
        nib.save(nib.Nifti1Image(lut[raw], theirs.affine, theirs.header), mapped)
        project = Project.init(folder / "project")
        try:
            for k in train_slices:
                (cid,) = project.add([source / "water.nii.gz"], slice_index=k).ids
                image = project.read_image(cid)
                labels = read_labels(mapped, image.geometry, index=k)
                project.save_labels(cid, labels, "corrected", labelled=vouched)
            report(progress, "corrections", len(train_slices), len(train_slices),
                   message=f"{len(train_slices)} corrected slices (MF, ES) of {source}")
            result = finetune_project(project, config)
            report(progress, "finetuned", 1, 1, message=f"fine-tuned in {result.seconds:.0f} "
                                                        f"s: {result.status} ({result.reason})")
            models = [load_model(project.model(result.parent).path, device="cpu"),
                      load_model(project.model(result.model_id).path, device="cpu")]
            scores: list[list[dict]] = [[], []]
            for k in test_slices:
                image = read_slice(InputRef(source / "water.nii.gz"), index=k)
                truth = read_labels(mapped, image.geometry, index=k)
                for out, model in zip(scores, models, strict=True):
                    seg = segment_slice(image, model)
                    out.append(dice_per_label(seg.labels, truth, vouched))
        finally:
            project.close()
    b = {BY_VALUE[v].short: float(np.nanmean([d[v] for d in scores[0]])) for v in vouched}
    a = {BY_VALUE[v].short: float(np.nanmean([d[v] for d in scores[1]])) for v in vouched}
    rows = [{"label": k, "before": b[k], "after": a[k], "change_points": 100 * (a[k] - b[k])}
            for k in b]
    mb, ma = _mean_case(scores[0]), _mean_case(scores[1])
    rows.append({"label": "mean", "before": mb, "after": ma, "change_points": 100 * (ma - mb)})
    summary = {"data": str(source), "train_slices": list(train_slices),
               "test_slices": list(test_slices), "dice_before": mb, "dice_after": ma,
               "gain_points": 100 * (ma - mb), "status": result.status,
               "heldout_before": result.active.mean, "heldout_after": result.candidate.mean,
               "finetune_seconds": result.seconds,
               "total_seconds": time.perf_counter() - start}
    return FinetuneBench(rows, summary, result)
