"""``paraspinal bench levels``: how often a stack's slices get their true lumbar level when
the model's own disc labels are counted (:mod:`.levels`), on synthetic stacks with known
levels (:mod:`.synth.stack`).

Each stack is written as a NIfTI volume and run through ``paraspinal run`` (the same path a
user's stack takes). A slice is ``correct`` when its level is the true one (a disc level on
a slice whose midline is inside that disc, else the vertebral body), ``unknown`` when the
run said it cannot know, and ``wrong`` otherwise. Half the stacks reach the sacrum, where
counting can work; on the others every slice should stay ``unknown``. The same counting on
the stacks' true disc areas is the ceiling the model's discs are measured against.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .jobs import ProgressFn, report
from .levels import LEVEL_ORDER, SACRUM, UNKNOWN, assign_levels

#: First seed of the stacks (apart from the seeds the tests draw).
SEED0 = 770000


def write_stack(stack, path: Path, labels_path: Path | None = None
                ) -> tuple[np.ndarray, list[str]]:
    """The stack's image (and, given ``labels_path``, its true label map) as NIfTI volumes
    (slices sorted upward, 1 mm pixels, LPS identity direction: the canonical maps' columns
    run to the patient's left); returns the sorted slice heights and true levels."""
    import SimpleITK as sitk

    order = np.argsort(stack.z)
    z = stack.z[order]
    volumes = [(path, (stack.images()[order] * 1000).astype(np.int16))]
    if labels_path is not None:
        volumes.append((labels_path, stack.labels[order].astype(np.uint8)))
    for target, data in volumes:
        img = sitk.GetImageFromArray(data)
        img.SetSpacing((1.0, 1.0, float(np.diff(z).mean())))
        img.SetOrigin((0.0, 0.0, float(z[0])))
        sitk.WriteImage(img, str(target))
    return z, [stack.levels[k] for k in order]


def score_levels(found: Sequence[str], truth: Sequence[str]) -> dict[str, int]:
    """Counts of slices named correctly, left ``unknown`` and named wrongly, and of the
    wrong ones those more than one step off (``miscounted``: a disc for the next disc, not
    a disc's edge slice given to the body beside it)."""
    rank = {name: i for i, name in enumerate(LEVEL_ORDER)}
    rank[SACRUM] = rank["S1"]  # counting names S1 "sacrum" beyond one body height
    pairs = list(zip(found, truth, strict=True))
    correct = sum(rank.get(f) == rank[t] for f, t in pairs)
    unknown = sum(f == UNKNOWN for f, _ in pairs)
    far = sum(f != UNKNOWN and abs(rank[f] - rank[t]) > 1 for f, t in pairs)
    return {"correct": correct, "unknown": unknown, "wrong": len(pairs) - correct - unknown,
            "miscounted": far}


def bench_levels(n: int = 10, model: str | None = None, size: int = 320,
                 progress: ProgressFn | None = None) -> list[dict]:
    """One row per synthetic stack (``n``, half reaching the sacrum): slices, and the counts
    of :func:`score_levels` for the model's discs and for the true discs."""
    from .pipeline import RunConfig
    from .run_batch import run
    from .synth.stack import draw_stack

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(n):
            seed, reach = SEED0 + i, i % 2 == 0
            stack = draw_stack(seed, reach_sacrum=reach, size=size)
            path = Path(folder) / f"stack{seed}.nii.gz"
            z, truth = write_stack(stack, path)
            (result,) = run([path], RunConfig(out_dir=Path(folder) / f"out{seed}",
                                              model=Path(model) if model else None,
                                              overlays=False))
            found = [r.get("level", UNKNOWN) for r in sorted(result.rows,
                                                              key=lambda r: r["slice"])]
            areas = stack.disc_areas()[np.argsort(stack.z)]
            ceiling = [lv.level for lv in assign_levels(areas, z)]
            rows.append({"seed": seed, "reaches_sacrum": reach, "slices": len(truth),
                         **{f"model_{k}": v for k, v in score_levels(found, truth).items()},
                         **{f"true_discs_{k}": v
                            for k, v in score_levels(ceiling, truth).items()}})
            report(progress, "levels", i + 1, n, f"stack {seed}")
    return rows


def summary(rows: Sequence[dict]) -> list[dict]:
    """Shares of slices (%) per kind of stack, for the model's discs and the true ones."""
    out = []
    for reach in (True, False):
        part = [r for r in rows if r["reaches_sacrum"] == reach]
        total = sum(r["slices"] for r in part)
        if not total:
            continue
        row: dict = {"stacks": "reaching the sacrum" if reach else "not reaching it",
                     "n": len(part), "slices": total}
        for src in ("model", "true_discs"):
            for k in ("correct", "unknown", "wrong", "miscounted"):
                row[f"{src}_{k}_pct"] = round(100.0 * sum(r[f"{src}_{k}"] for r in part)
                                              / total, 1)
        out.append(row)
    return out
