"""``paraspinal bench gui`` on a tiny input: the report's structure and what it saw.

No timing is asserted (speed is what the bench prints); the test checks that the probe
ticked in every phase, that painting during a run survived and that Cancel stopped a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]
needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run"
)
PHASES = ("start", "segment", "paint", "cancel", "finetune", "overall")


@needs_display
def test_bench_gui_on_a_small_phantom_stack(tmp_path) -> None:
    """Run as a user runs it, in its own process (napari's plugin registry is per process)."""
    out = tmp_path / "gui.json"
    done = subprocess.run([sys.executable, "-m", "napari_paraspinal", "bench", "gui", "--n", "3",
                           "--phantom", "--out", str(out)], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout
    report = json.loads(out.read_text())

    assert report["data"] == "phantom stack" and report["slices"] == 3
    assert set(report["stalls"]) == set(PHASES)
    for phase in PHASES:
        s = report["stalls"][phase]
        assert s["ticks"] > 0, phase  # the probe ran through every phase
        assert 0.0 <= s["p99_ms"] <= s["max_ms"]
        assert 0 <= s["over_100ms"] <= s["ticks"]
        assert f"{phase:>9}: max GUI stall: " in printed
    overall = report["stalls"]["overall"]
    assert overall["ticks"] == sum(report["stalls"][p]["ticks"] for p in PHASES[:-1])
    assert overall["max_ms"] == max(report["stalls"][p]["max_ms"] for p in PHASES[:-1])

    assert report["gui_s_per_slice"] > 0 and report["cli_s_per_slice"] > 0
    assert report["gui_s_click_to_model"] > 0 and len(report["cli_runs_s_per_slice"]) == 2
    assert report["gui_to_cli"] == pytest.approx(
        report["gui_s_per_slice"] / report["cli_s_per_slice"], abs=0.01)
    assert report["gui_ms_per_result"]["max"] >= report["gui_ms_per_result"]["median"] >= 0

    paint = report["paint"]
    assert paint["strokes"] > 0 and paint["pixels"] > 0
    assert paint["pixels_kept"] and paint["undisturbed"], paint["checks"]

    cancel = report["cancel"]
    assert cancel["stopped"] and cancel["segmented"] < cancel["total"] == 3

    assert report["finetune"]["events"] > 0
    assert report["finetune"]["status"] in ("promoted", "rejected")

    first = report["start_screen_s"]  # the app's start screen, three fresh launches
    assert len(first) == 3 and all(0.0 < s < 60.0 for s in first)
    assert "first window (start screen) after launch: " in printed


def test_stall_stats_and_the_probe(qtbot) -> None:
    from napari_paraspinal._napari.bench_probe import StallProbe, stall_stats, wait_until

    assert stall_stats([]) == {"ticks": 0, "max_ms": 0.0, "p99_ms": 0.0, "over_100ms": 0}
    s = stall_stats([0.0] * 98 + [150.0, 300.0])
    assert (s["ticks"], s["max_ms"], s["over_100ms"]) == (100, 300.0, 2)
    assert 150.0 <= s["p99_ms"] <= 300.0

    probe = StallProbe()
    probe.phase = "busy"
    probe.start()
    blocked = []

    def block() -> None:  # the GUI thread held for 150 ms, once
        if not blocked:
            blocked.append(True)
            time.sleep(0.15)

    wait_until(lambda: len(probe.lates.get("busy", [])) > 30, 10.0, every=block)
    probe.stop()
    lates = probe.lates["busy"]
    assert blocked and len(lates) > 30
    assert max(lates) >= 100.0  # the blocked event loop shows as one late tick
