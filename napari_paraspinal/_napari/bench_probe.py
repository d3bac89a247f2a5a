"""The parts of ``paraspinal bench gui``: the event-loop probe, waiting in the event loop,
a programmatic brush, the input stack, the command line's pace and a small project."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEventLoop, QObject, Qt, QTimer

#: How often the probe's timer should fire (ms).
TICK_MS = 10


class StallProbe(QObject):
    """A timer on the GUI thread that records, per phase, how late each tick fired (ms).

    A tick is late when the event loop was busy; the lateness is the stall the user felt.
    Setting :attr:`phase` closes the running interval in the old phase, so a stall inside
    a call made between two phase changes counts in its own phase.
    """

    def __init__(self, interval_ms: int = TICK_MS) -> None:
        super().__init__()
        self.interval_ms = interval_ms
        self._phase = "idle"
        self.lates: dict[str, list[float]] = {}
        self._last = 0.0
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    @property
    def phase(self) -> str:
        return self._phase

    @phase.setter
    def phase(self, name: str) -> None:
        if self._timer.isActive():
            self._tick()
            self._timer.start()  # the next tick one interval from now
        self._phase = name

    def _tick(self) -> None:
        now = time.perf_counter()
        late = max(0.0, (now - self._last) * 1000.0 - self.interval_ms)
        self.lates.setdefault(self._phase, []).append(late)
        self._last = now


def stall_stats(lates: list[float]) -> dict:
    """Ticks, the longest stall, the 99th percentile and the stalls over 100 ms."""
    if not lates:
        return {"ticks": 0, "max_ms": 0.0, "p99_ms": 0.0, "over_100ms": 0}
    a = np.asarray(lates)
    return {"ticks": int(a.size), "max_ms": round(float(a.max()), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1),
            "over_100ms": int((a > 100.0).sum())}


def wait_until(done: Callable[[], bool], timeout_s: float,
               every: Callable[[], None] | None = None, every_ms: int = 50) -> bool:
    """Run the Qt event loop until ``done()`` (checked every 20 ms) or the timeout;
    ``every`` is called every ``every_ms`` meanwhile. Whether ``done()`` came true."""
    loop = QEventLoop()
    timers = []
    check = QTimer()
    check.timeout.connect(lambda: loop.quit() if done() else None)
    timers.append(check)
    if every is not None:
        action = QTimer()
        action.timeout.connect(every)
        action.start(every_ms)
        timers.append(action)
    limit = QTimer()
    limit.setSingleShot(True)
    limit.timeout.connect(loop.quit)
    limit.start(int(timeout_s * 1000))
    timers.append(limit)
    check.start(20)
    if not done():
        loop.exec()
    for timer in timers:
        timer.stop()
    return bool(done())


class PaintBrush:
    """A person painting ``label`` into plane ``plane`` of a labels layer, stroke by stroke
    (:meth:`Labels.paint`, what napari's brush calls), as the active layer in paint mode."""

    def __init__(self, viewer: Any, layer: Any, label: int = 7, plane: int = 0,
                 size: int = 6) -> None:
        self.viewer, self.layer, self.label, self.plane = viewer, layer, label, plane
        self.name, self.strokes = layer.name, 0
        viewer.layers.selection.active = layer
        layer.visible = True
        layer.mode = "paint"
        layer.selected_label = label
        layer.brush_size = size
        self.painted = np.zeros(np.shape(layer.data)[-2:], bool)

    def stroke(self) -> None:
        """One dab along a diagonal through the middle of the plane."""
        rows, cols = self.painted.shape
        k = self.strokes % 40
        r, c = rows * (0.3 + 0.01 * k), cols * (0.3 + 0.01 * k)
        coord = (self.plane, r, c) if np.ndim(self.layer.data) == 3 else (r, c)
        self.layer.paint(coord, self.label)
        box = (slice(max(0, int(r) - 8), int(r) + 9), slice(max(0, int(c) - 8), int(c) + 9))
        plane = self.layer.data[self.plane] if np.ndim(self.layer.data) == 3 else self.layer.data
        self.painted[box] |= plane[box] == self.label
        self.strokes += 1

    def check(self) -> dict:
        """Whether the painted layer and its brush are as the person left them."""
        layer = self.layer
        plane = layer.data[self.plane] if np.ndim(layer.data) == 3 else layer.data
        checks = {
            "in_viewer": layer in self.viewer.layers,
            "name": layer.name == self.name,
            "visible": bool(layer.visible),
            "active": self.viewer.layers.selection.active is layer,
            "mode": str(getattr(layer.mode, "value", layer.mode)) == "paint",
            "selected_label": int(layer.selected_label) == self.label,
        }
        kept = bool(self.painted.any() and np.all(plane[self.painted] == self.label))
        return {"strokes": self.strokes, "pixels": int(self.painted.sum()),
                "pixels_kept": kept, "undisturbed": all(checks.values()), "checks": checks}


def stack_layer(n_slices: int | None = None, phantom: bool = False
                ) -> tuple[np.ndarray, dict, str]:
    """Image layer data of the real lpm_tum01 water stack (first ``n_slices``), or of a
    phantom stack of ``n_slices`` (29 by default) when asked or the real data is absent."""
    from ..realdata import default_real_data_dir

    water = default_real_data_dir() / "lpm_tum01" / "water.nii.gz"
    if not phantom and water.is_file():
        from .layers import GEOMETRY_KEY
        from .reader import read_layers

        ((data, kwargs, _),) = read_layers(str(water))
        if n_slices is not None:
            data = data[:n_slices]
            meta = dict(kwargs["metadata"])
            meta[GEOMETRY_KEY] = meta[GEOMETRY_KEY][:n_slices]
            kwargs = {**kwargs, "metadata": meta}
        return data, kwargs, "lpm_tum01 water (real)"
    return (*phantom_stack(n_slices or 29), "phantom stack")


def phantom_stack(n: int) -> tuple[np.ndarray, dict]:
    """Image layer data of ``n`` slices 4 mm apart: one phantom, its contrast a little
    different on each (phantoms of other seeds differ in size, and a stack cannot)."""
    from ..core.geometry import Geometry
    from ..phantom import PhantomConfig, generate_phantom
    from .layers import image_layer

    image = generate_phantom(6, PhantomConfig(level="L4-L5")).image
    g = image.geometry
    planes = [image.with_data((image.data * (1.0 + 0.01 * k)).astype(image.data.dtype),
                              geometry=Geometry(g.shape, g.spacing, (g.origin[0], g.origin[1],
                                                                     g.origin[2] + 4.0 * k),
                                                g.direction))
              for k in range(n)]
    data, kwargs, _ = image_layer(planes, name="phantom stack")
    return data, kwargs


def cli_seconds_per_slice(image: Any, level: str = "auto") -> float:
    """Seconds per slice of :func:`..segment.segment_many` on the layer's slices (the
    command line's code, no GUI), after a one-slice warm-up; model loading not counted."""
    from ..segment import load_model, segment_many
    from .slices import layer_to_slices

    slices = layer_to_slices(image)
    model = load_model(None, "auto")
    for _ in segment_many(slices[:1], model, level, batch_size=4):
        pass
    t = time.perf_counter()
    n = sum(1 for _ in segment_many(slices, model, level, batch_size=4))
    return (time.perf_counter() - t) / max(1, n)


def finetune_project(folder: Path, n_cases: int = 2) -> Path:
    """A project of ``n_cases`` phantom slices saved as corrected/verified, with the shipped
    model registered and active: enough for a one-epoch fine-tune."""
    from ..core.writers import write_image
    from ..phantom import PhantomConfig, generate_phantom
    from ..project import Project
    from ..segment import default_model_path

    project = Project.init(folder / "project")
    for k in range(n_cases):
        case = generate_phantom(100 + k, PhantomConfig(level=("L4-L5", "L5-S1")[k % 2]))
        path = write_image(case.image, folder / f"case{k}.nii.gz")
        (cid,) = project.add([path]).ids
        project.save_labels(cid, case.labels, ("corrected", "verified")[k % 2])
    project.register_model(default_model_path(), model_id="shipped", active=True)
    root = project.root
    project.close()
    return root
