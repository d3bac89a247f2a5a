"""Screenshot of napari with the plugin docked: a phantom segmented, fat overlay on.

Run under a display (``xvfb-run -a .venv/bin/python docs/screenshot.py docs/napari_plugin.png``).
It drives the same widgets a user clicks, through their public methods.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_paraspinal.core.writers import write_image
from napari_paraspinal.phantom import PhantomConfig, generate_phantom


def wait(condition, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not condition():
        QApplication.processEvents()
        if time.time() > end:
            raise TimeoutError("the widget did not finish in time")
        time.sleep(0.05)


def main(out: str) -> None:
    case = generate_phantom(4242, PhantomConfig(level="L4-L5", fat_infiltration=(0.2, 0.4)))
    path = Path(tempfile.mkdtemp()) / "phantom_L4L5.nii.gz"
    write_image(case.image, path)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open(str(path), plugin="napari-paraspinal")
    _, segment = viewer.window.add_plugin_dock_widget("napari-paraspinal", "Segment")
    done = []
    worker = segment.start()
    worker.finished.connect(lambda: done.append(True))
    wait(lambda: bool(done))
    _, measure = viewer.window.add_plugin_dock_widget("napari-paraspinal", "Fat and areas")
    measure.overlay_check.setChecked(True)
    measure.recompute()
    wait(lambda: measure.last is not None and any(
        layer.name.endswith(" fat") for layer in viewer.layers))
    measure.table.resizeColumnsToContents()
    viewer.layers.selection.active = viewer.layers["phantom_L4L5 labels"]
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    viewer.screenshot(out, canvas_only=False)
    print(f"saved {out}")
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/napari_plugin.png")
