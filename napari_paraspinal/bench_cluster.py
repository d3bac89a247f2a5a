"""``paraspinal bench cluster``: throughput of a cohort run, plain and on Dask workers.

A cohort of ``n`` phantom slices (one case each; fixed seeds) is run as a user runs it:
``paraspinal run`` in a fresh process (start-up, model loading, every case, the tables), once
plainly and once on a local Dask cluster per number of workers. The figures say what more
workers give on this machine and how much the cluster itself costs (worker start-up and a
model per worker), from which the README works out what more nodes would give.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .cluster import LOCAL


def _run(args: list[str]) -> float:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "napari_paraspinal", "run", *args, "--quiet",
                           "--no-overlays"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"paraspinal run {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - t


def bench_cluster(n: int = 16, workers: tuple[int, ...] | None = None) -> list[dict]:
    """One row per way of running ``n`` cases: wall seconds, cases per minute, speed-up over
    the plain run."""
    from .phantom.dataset import write_dataset

    workers = workers or tuple(range(1, (os.cpu_count() or 1) + 1))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cohort"
        write_dataset(data, n, 610_000)
        images = str(data / "images")
        plain = _run([images, "--out", str(Path(tmp) / "plain")])
        rows.append({"how": "plain run", "workers": 1, "cases": n, "seconds": round(plain, 1),
                     "cases_per_min": round(60 * n / plain, 1), "speed_up": 1.0})
        for w in workers:
            seconds = _run([images, "--out", str(Path(tmp) / f"dask{w}"), "--cluster", LOCAL,
                            "--workers", str(w)])
            rows.append({"how": "--cluster local", "workers": w, "cases": n,
                         "seconds": round(seconds, 1),
                         "cases_per_min": round(60 * n / seconds, 1),
                         "speed_up": round(plain / seconds, 2)})
    return rows
