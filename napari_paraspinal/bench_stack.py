"""How long a whole stack takes from files to label volume and table, as a user runs it.

Each job is ``paraspinal run`` in a fresh Python process (start-up, model loading, reading,
segmentation, measurement, overlays and the spreadsheet all count), on the real Dixon case
of ``../shared/data``: the water stack alone and the water/fat pair.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .realdata import default_real_data_dir

_CHILD = ("import resource, sys\n"
          "from napari_paraspinal.cli import main\n"
          "rc = main(sys.argv[1:])\n"
          "print('PEAK_RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n"
          "sys.exit(rc)\n")


def stack_jobs(root: Path | None = None) -> dict[str, list[str]]:
    """The ``paraspinal run`` arguments of each job (inputs only; ``--out`` is added)."""
    case = (root or default_real_data_dir()) / "lpm_tum01"
    water, fat = str(case / "water.nii.gz"), str(case / "fat.nii.gz")
    return {"lpm_tum01 water stack": [water],
            "lpm_tum01 Dixon pair": ["--water", water, "--fat", fat]}


def bench_stack(root: Path | None = None, overlays: bool = True) -> list[dict]:
    """One row per job: slices, wall seconds (process start to tables written), seconds per
    slice and the process's peak memory."""
    rows = []
    for name, args in stack_jobs(root).items():
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-c", _CHILD, "run", *args, "--out", out, "--quiet"]
            if not overlays:
                cmd.append("--no-overlays")
            t = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - t
            if done.returncode != 0:
                raise RuntimeError(f"{name}: paraspinal run failed:\n{done.stderr[-2000:]}")
            peak = next(float(line.split()[1]) for line in done.stdout.splitlines()
                        if line.startswith("PEAK_RSS_MB"))
            slices = sum(1 for _ in (Path(out) / "overlays").glob("*.png")) if overlays else None
            rows.append({"job": name, "slices": slices, "seconds": round(seconds, 2),
                         "s_per_slice": round(seconds / slices, 3) if slices else None,
                         "peak_rss_mb": round(peak)})
    return rows
