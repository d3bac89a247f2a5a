"""The paper's ablation: U-Net, U-Net + CRF-as-RNN, and U-Net + CRF-as-RNN with multi-data.

Every variant starts from the same initial weights (same seed), trains on the same split with
the same settings, and is scored on the same test slices in atlas space, so differences come
from the variant alone. Per test slice and label the Dice of the argmax is kept; variants are
compared with paired t-tests on those per-slice values (``scipy.stats.ttest_rel``), for the
mean over the eight structures and for each structure.

With ``TrainConfig.max_minutes_pretrain`` every variant gets the same U-Net phase time (for a
fixed compute budget, e.g. on a GPU lease); the joint phase is bounded by its epoch count.
Needs numpy, scipy and torch only (no image I/O), so it runs wherever training runs.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from ..core.labels import LABELS
from ..jobs import Cancel, ProgressFn
from .metrics import dice_per_label
from .samples import AtlasSamples
from .segmenter import Segmenter, SegmenterConfig
from .train import train
from .train_config import TrainConfig
from .train_data import TrainData

#: Variant name -> (CRF in the model, multi-data training), in the paper's order.
VARIANTS: dict[str, tuple[bool, bool]] = {
    "U-Net": (False, False),
    "U-Net+CRF": (True, False),
    "U-Net+CRF+multi-data": (True, True),
}


@dataclass(frozen=True)
class AblationConfig:
    """The network and training settings shared by every variant."""

    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    variants: tuple[str, ...] = tuple(VARIANTS)

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or len(self.variants) < 2:
            raise ValueError(f"variants must be two or more of {list(VARIANTS)}, got "
                             f"{list(self.variants)}")


@dataclass
class AblationResult:
    """Per-slice Dice of every variant, the summary table, the paired tests, the training logs."""

    cases: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    histories: dict[str, list[dict[str, Any]]]
    seconds: dict[str, float]


def case_dice(model: Segmenter, samples: AtlasSamples, device: str) -> np.ndarray:
    """Dice per test slice (rows) and label 1–8 (columns); NaN where a label is absent."""
    probs = model.predict_proba(samples.images, batch_size=8, device=device)
    pred = probs.argmax(1)
    out = np.full((len(samples), len(LABELS)), np.nan)
    for i in range(len(samples)):
        dice = dice_per_label(pred[i], samples.labels[i], [lab.value for lab in LABELS])
        out[i] = [dice[lab.value] for lab in LABELS]
    return out


def paired_tests(scores: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Paired t-tests of each variant against the one before it and against the first."""
    names = list(scores)
    pairs = [(names[i - 1], names[i]) for i in range(1, len(names))]
    if len(names) > 2:
        pairs.append((names[0], names[-1]))
    rows = []
    for a, b in pairs:
        for j, short in enumerate(_columns()):
            x, y = _score_column(scores[a], j), _score_column(scores[b], j)
            keep = np.isfinite(x) & np.isfinite(y)
            diff = y[keep] - x[keep]
            if keep.sum() >= 2 and np.ptp(diff) > 0:
                t, p = stats.ttest_rel(y[keep], x[keep])
            else:
                t = p = float("nan")
            rows.append({"comparison": f"{b} vs {a}", "label": short, "n": int(keep.sum()),
                         "mean_difference": float(diff.mean()) if diff.size else float("nan"),
                         "t": float(t), "p": float(p)})
    return rows


def summarise(scores: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Mean and SD of the per-slice Dice, one row per label (and the mean), one column pair per
    variant."""
    rows = []
    for j, short in enumerate(_columns()):
        row: dict[str, Any] = {"label": short}
        for name, s in scores.items():
            col = _score_column(s, j)
            col = col[np.isfinite(col)]
            row[f"{name} mean"] = float(col.mean()) if col.size else float("nan")
            row[f"{name} sd"] = float(col.std(ddof=1)) if col.size > 1 else float("nan")
        rows.append(row)
    return rows


def run_ablation(train_set: AtlasSamples, val_set: AtlasSamples, test_set: AtlasSamples,
                 config: AblationConfig | None = None,
                 progress: ProgressFn | None = None,
                 cancel: Cancel | None = None) -> AblationResult:
    """Train every variant on the same split from the same initial weights; score and test.

    ``progress`` gets each variant's epochs as :func:`.train.train` reports them, with
    ``case`` the variant; ``cancel`` stops at the next batch, keeping the variants done.
    """
    config = config or AblationConfig()
    torch.manual_seed(config.train.seed)
    initial = Segmenter(replace(config.segmenter, use_crf=True)).state_dict()
    scores: dict[str, np.ndarray] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    train_data = TrainData(train_set.images, train_set.labels, train_set.label_mask)
    val_data = TrainData(val_set.images, val_set.labels, val_set.label_mask)
    for name in config.variants:
        use_crf, multi = VARIANTS[name]
        model = Segmenter(replace(config.segmenter, use_crf=use_crf))
        model.load_state_dict({k: v for k, v in copy.deepcopy(initial).items()
                               if k in model.state_dict()})
        tcfg = replace(config.train, multi_data=multi,
                       epochs_joint=config.train.epochs_joint if use_crf else 0)
        start = time.perf_counter()
        result = train(model, train_data, val_data, tcfg,
                       progress=None if progress is None else
                       (lambda event, name=name: progress(replace(
                           event, case=name, message=f"{name}: {event.message}"))),
                       cancel=cancel, keep_crf=True)
        seconds[name] = time.perf_counter() - start
        histories[name] = result.history
        if result.cancelled:
            break
        device = str(next(model.parameters()).device)
        scores[name] = case_dice(model, test_set, device)
    cases = [
        {"variant": name, "case": test_set.sources[i],
         **{short: float(s[i, j]) for j, short in enumerate(_columns()[:-1])},
         "mean": float(_score_column(s, s.shape[1])[i])}
        for name, s in scores.items() for i in range(len(test_set))
    ]
    tests = paired_tests(scores) if len(scores) >= 2 else []
    return AblationResult(cases, summarise(scores), tests, histories, seconds)


def markdown_report(result: AblationResult, note: str = "") -> str:
    """The summary as a Markdown table (mean ± SD Dice) and the paired tests of the mean."""
    names = [k[:-5] for k in result.summary[0] if k.endswith(" mean")] if result.summary else []
    lines = [note, ""] if note else []
    lines += ["| structure | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for row in result.summary:
        cells = [f"{row[f'{n} mean']:.3f} ± {row[f'{n} sd']:.3f}" for n in names]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison | structure | n | mean Dice difference | t | p |",
              "|---|---|---|---|---|---|"]
    for t in result.tests:
        lines.append(f"| {t['comparison']} | {t['label']} | {t['n']} | "
                     f"{t['mean_difference']:+.4f} | {t['t']:.2f} | {t['p']:.3g} |")
    lines += ["", "Training time (s): " + ", ".join(f"{k} {v:.0f}"
                                                  for k, v in result.seconds.items())]
    return "\n".join(lines) + "\n"


def write_report(result: AblationResult, out: str | os.PathLike[str], note: str = ""
                 ) -> dict[str, Path]:
    """``ablation.md`` and CSVs of the per-slice scores, the summary, the tests and the logs."""
    from ..core.atomic import write_text_atomic
    from ..export import write_csv

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "ablation.md"}
    write_text_atomic(paths["report"], markdown_report(result, note))
    for key, rows in (("cases", result.cases), ("summary", result.summary),
                      ("tests", result.tests)):
        paths[key] = write_csv(rows, out / f"ablation_{key}.csv")
    paths["histories"] = write_csv(
        [{"variant": name, **entry} for name, h in result.histories.items() for entry in h],
        out / "ablation_training_log.csv")
    return paths


def _columns() -> list[str]:
    return [lab.short for lab in LABELS] + ["mean"]


def _score_column(scores: np.ndarray, j: int) -> np.ndarray:
    """Column ``j`` of the per-slice scores; the last column is the mean over structures."""
    if j < scores.shape[1]:
        return scores[:, j]
    finite = np.isfinite(scores)
    counts = finite.sum(1)
    total = np.where(finite, scores, 0.0).sum(1)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)

