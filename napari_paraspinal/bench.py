"""Benchmarks (``paraspinal bench ...``): measured numbers, never timed tests."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence

import numpy as np

from .core.labels import BY_VALUE
from .fat import METHODS, FatConfig, separate_fat
from .phantom import LEVELS, PhantomConfig, generate_phantom
from .preprocess.n4 import n4_correct


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_fat(n: int = 100, seed: int = 200_000, methods: Sequence[str] = METHODS,
              bias: bool = True, n4: bool = True) -> list[dict]:
    """Fat % error of each method against phantom truth (percentage points), per muscle.

    The phantoms carry noise and, with ``bias``, a multiplicative bias field; with ``n4``
    it is corrected first, as in the pipeline.
    """
    errors: dict[str, list[float]] = {m: [] for m in methods}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    flags: dict[str, int] = dict.fromkeys(methods, 0)
    for k in range(n):
        config = PhantomConfig(level=LEVELS[k % 2],
                               bias_strength=(0.0, 0.35) if bias else (0.0, 0.0))
        case = generate_phantom(seed + k, config)
        image = n4_correct(case.image).corrected if n4 else case.image
        for method in methods:
            t = time.perf_counter()
            result = separate_fat(image.data, case.labels, case.image.geometry,
                                  FatConfig(method=method))
            seconds[method] += time.perf_counter() - t
            for value, m in result.muscles.items():
                truth = case.truth["structures"][BY_VALUE[value].short]["fat_fraction"]
                errors[method].append(100.0 * (m.fat_fraction - truth))
                flags[method] += bool(m.flag)
    rows = []
    for method in methods:
        e = np.asarray(errors[method])
        rows.append({"method": method, "muscles": int(e.size),
                     "mae_points": float(np.abs(e).mean()), "bias_points": float(e.mean()),
                     "p95_abs_points": float(np.percentile(np.abs(e), 95)),
                     "max_abs_points": float(np.abs(e).max()), "flagged": flags[method],
                     "ms_per_case": 1000.0 * seconds[method] / n})
    return rows


def bench_preprocess(repeats: int = 5, seed: int = 300_000) -> list[dict]:
    """Median time per step (ms) of the preprocessing chain at 256² and 512² phantoms.

    Registration and resampling join the table when they land.
    """
    from .preprocess import body_mask, n4_correct, normalize

    rows = []
    for matrix, fov in ((256, (250.0, 300.0)), (512, (380.0, 420.0))):
        times: dict[str, list[float]] = {"body_mask": [], "n4": [], "normalize": []}
        for k in range(repeats):
            case = generate_phantom(seed + k, PhantomConfig(matrix=(matrix, matrix),
                                                            fov_mm=fov))
            t0 = time.perf_counter()
            mask = body_mask(case.image)
            t1 = time.perf_counter()
            corrected = n4_correct(case.image, mask).corrected
            t2 = time.perf_counter()
            normalize(corrected, mask)
            t3 = time.perf_counter()
            for key, dt in (("body_mask", t1 - t0), ("n4", t2 - t1), ("normalize", t3 - t2)):
                times[key].append(1000.0 * dt)
        row = {"matrix": f"{matrix}²"}
        row.update({f"{k}_ms": float(np.median(v)) for k, v in times.items()})
        row["total_ms"] = sum(row[f"{k}_ms"] for k in times)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A markdown table of benchmark rows."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = [f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
