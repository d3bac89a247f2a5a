"""``paraspinal bench gui``: how responsive napari stays while the plugin works.

A real viewer (under a display; Xvfb will do) gets the Segment widget and a stack (the real
lpm_tum01 water stack when the shared data is there, else a phantom stack). An event-loop
probe, a 10 ms timer on the GUI thread, records how late each tick fires; a late tick is
a stall, time in which the GUI could not repaint or react. Phases:

- ``start``: the Run click itself (where the labels layer was edited, it is kept and a
  fresh one added then);
- ``segment``: the stack segmented through the widget (the Run button's code);
- ``paint``: segmented again while a brush paints into the labels layer every 50 ms;
- ``cancel``: a third run cancelled midway, from the click until the run has stopped;
- ``finetune``: a one-epoch fine-tune through the Project widget on a small project (the
  widget docked and laid out before it starts).

The GUI's seconds per slice (model loaded to last result) are set against
:func:`..segment.segment_many` on the same slices in the same process without a GUI (the
mean of a run before and one after the GUI's, as the machine's load may change). Last, the
app is launched three times to time its first window (:mod:`.bench_start`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .bench_probe import (
    PaintBrush,
    StallProbe,
    cli_seconds_per_slice,
    finetune_project,
    stack_layer,
    stall_stats,
    wait_until,
)

PHASES = ("start", "segment", "paint", "cancel", "finetune")
TIMEOUT_S = 1800.0


def bench_gui(n_slices: int | None = None, finetune: bool = True, phantom: bool = False,
              level: str = "auto") -> dict:
    """Run the phases in a fresh viewer; the report (stall figures per phase and overall,
    GUI and CLI seconds per slice, and what the paint and cancel checks saw)."""
    import napari

    from .segment_widget import ALL, SegmentWidget

    data, kwargs, source = stack_layer(n_slices, phantom)
    viewer = napari.Viewer(show=True)
    try:
        image = viewer.add_image(data, **kwargs)
        seg = SegmentWidget(viewer)
        viewer.window.add_dock_widget(seg)
        seg.planes_combo.setCurrentText(ALL)
        seg.level_combo.setCurrentText(level)
        n = int(np.shape(image.data)[0]) if np.ndim(image.data) == 3 else 1
        cli = [cli_seconds_per_slice(image, level)]
        probe = StallProbe()
        probe.start()
        wait_until(lambda: False, 0.5)  # let the window settle
        report: dict[str, Any] = {"data": source, "slices": n, "shape": list(np.shape(data))}

        run = _run(seg, probe, "segment")
        report["gui_s_per_slice"] = run["s_per_slice"]
        report["gui_ms_per_result"] = run["ms_per_result"]
        report["gui_s_click_to_model"] = run["s_to_model"]
        probe.phase = "idle"
        cli.append(cli_seconds_per_slice(image, level))  # the load varies: before and after

        labels = viewer.layers[f"{image.name} labels"]
        brush = PaintBrush(viewer, labels, label=7, plane=_shown_plane(viewer, image))
        _run(seg, probe, "paint", during=brush.stroke)
        report["paint"] = brush.check()

        report["cancel"] = _cancelled_run(seg, probe, after=n // 2 if n > 4 else 0)

        if finetune:
            probe.phase = "idle"
            with tempfile.TemporaryDirectory() as folder:
                report["finetune"] = _finetune(viewer, Path(folder), probe)
        probe.stop()
    finally:
        viewer.close()
    from .bench_start import seconds_to_start_screen

    report["start_screen_s"] = seconds_to_start_screen()
    report["cli_s_per_slice"] = float(np.mean(cli))
    report["cli_runs_s_per_slice"] = cli
    report["gui_to_cli"] = round(report["gui_s_per_slice"] / report["cli_s_per_slice"], 2)
    report["stalls"] = {p: stall_stats(probe.lates[p]) for p in PHASES if p in probe.lates}
    report["stalls"]["overall"] = stall_stats(
        [x for p in PHASES for x in probe.lates.get(p, [])])
    return report


def format_report(report: dict) -> str:
    """The report as lines of text."""
    lines = [f"{report['data']}: {report['slices']} slices {report['shape'][1:]}"]
    for phase, s in report["stalls"].items():
        lines.append(f"{phase:>9}: max GUI stall: {s['max_ms']:.0f} ms, p99 {s['p99_ms']:.0f} ms, "
                     f"{s['over_100ms']} stalls over 100 ms ({s['ticks']} ticks)")
    ms = report["gui_ms_per_result"]
    lines.append("(start: the Run click; segment, paint: while runs go on, painting in the "
                 "second; cancel: from the Cancel click until the run stopped)")
    lines.append(f"GUI-thread work per finished slice: median {ms['median']:.1f} ms, "
                 f"max {ms['max']:.1f} ms")
    ratio = report["gui_to_cli"]
    cli = ", ".join(f"{x:.2f}" for x in report["cli_runs_s_per_slice"])
    lines.append(f"seconds per slice: GUI {report['gui_s_per_slice']:.2f}, command line "
                 f"{report['cli_s_per_slice']:.2f} (runs {cli}; ratio GUI/CLI {ratio}); "
                 f"Run click to model loaded: {report['gui_s_click_to_model']:.1f} s")
    paint, cancel = report["paint"], report["cancel"]
    lines.append(f"painting during a run: {paint['strokes']} strokes, painted pixels kept: "
                 f"{paint['pixels_kept']}, layer undisturbed: {paint['undisturbed']}")
    lines.append(f"cancel: {cancel['segmented']} of {cancel['total']} slices, stopped: "
                 f"{cancel['stopped']}, {cancel['seconds_to_stop']:.1f} s to stop")
    first = report.get("start_screen_s")
    if first:
        lines.append(f"first window (start screen) after launch: {max(first):.2f} s at most "
                     f"({', '.join(f'{x:.2f}' for x in first)})")
    if "finetune" in report:
        ft = report["finetune"]
        lines.append(f"fine-tune: {ft['events']} progress events, {ft['seconds']:.1f} s, "
                     f"status {ft['status']}")
    return "\n".join(lines)


def _run(seg: Any, probe: StallProbe, phase: str,
         during: Callable[[], None] | None = None) -> dict:
    """One run of the widget over all planes (the probe in ``phase`` once it started);
    ``during`` called every 50 ms while it runs.

    The widget's result slot is timed (GUI-thread work per finished slice).
    """
    spent: list[float] = []
    original = seg._on_step

    def timed(step: Any) -> None:
        t = time.perf_counter()
        original(step)
        spent.append(time.perf_counter() - t)
        stamps.append((step.stage, time.perf_counter()))

    stamps: list[tuple[str, float]] = []
    seg._on_step = timed
    try:
        probe.phase = "start"
        clicked = time.perf_counter()
        worker = seg.start()
        probe.phase = phase
        if worker is None:
            raise RuntimeError(f"the Segment widget did not start: {seg.status.text()}")
        wait_until(lambda: seg.worker is None, TIMEOUT_S, every=during)
    finally:
        del seg._on_step
    results = [t for stage, t in stamps if stage == "segment"]
    start = next((t for stage, t in stamps if stage == "model"), None)
    if start is None or not results:
        raise RuntimeError(f"the run gave no result: {seg.status.text()}")
    # the first slot call is the model step: result slots only
    work = [s * 1000 for (stage, _), s in zip(stamps, spent, strict=True) if stage == "segment"]
    return {"s_per_slice": (results[-1] - start) / len(results), "s_to_model": start - clicked,
            "ms_per_result": {"median": float(np.median(work)), "max": float(np.max(work))}}


def _cancelled_run(seg: Any, probe: StallProbe, after: int) -> dict:
    """Start a run, click Cancel once ``after`` slices are in (0: once the model is loaded);
    what the run did."""
    steps: list = []
    probe.phase = "start"
    worker = seg.start()
    probe.phase = "idle"
    if worker is None:
        raise RuntimeError(f"the Segment widget did not start: {seg.status.text()}")
    worker.yielded.connect(steps.append)
    total = seg.progress.maximum()
    wait_until(lambda: seg.worker is None or len(steps) > after, TIMEOUT_S)
    probe.phase = "cancel"
    t = time.perf_counter()
    seg.cancel()
    wait_until(lambda: seg.worker is None, TIMEOUT_S)
    seconds = time.perf_counter() - t
    probe.phase = "idle"
    done = sum(1 for s in steps if getattr(s, "plane", None) is not None)
    return {"total": total, "segmented": done, "seconds_to_stop": seconds,
            "stopped": done < total and seg.status.text().startswith("cancelled")}


def _finetune(viewer: Any, folder: Path, probe: StallProbe) -> dict:
    """A one-epoch fine-tune through the Project widget on a small phantom project."""
    from .project_widget import ProjectWidget

    root = finetune_project(folder)
    widget = ProjectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_project(root)
    wait_until(lambda: False, 0.5)  # the new dock laid out and painted: set-up, like the image
    events: list = []
    widget._relay.progress.connect(events.append)
    probe.phase = "finetune"
    t = time.perf_counter()
    worker = widget.start_finetune(replay=0, replay_check=0, epochs=1, joint_epochs=0,
                                   device="cpu")
    if worker is None:
        raise RuntimeError(f"fine-tuning did not start: {widget.status.text()}")
    wait_until(lambda: widget.worker is None, TIMEOUT_S)
    seconds = time.perf_counter() - t
    probe.phase = "idle"
    result = widget.last_result
    status = getattr(result, "status", "failed")
    widget.close()
    return {"events": len(events), "seconds": seconds, "status": status}


def _shown_plane(viewer: Any, image: Any) -> int:
    from .slices import current_plane

    return current_plane(image, viewer.dims.point)
