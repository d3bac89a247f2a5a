"""The Qt binding does not eat references to None.

PySide6 6.12.0 on Python 3.11 drops a reference to None on every call into a Python
override: resizing napari's window lost about 200 per resize event, and Python aborts
("none_dealloc: deallocating None") once None's count reaches zero, after some hundreds of
resizes of a day's work (or a test run). The ``gui`` extra therefore asks for
``PySide6<6.12``; this test fails on a binding with the defect. From Python 3.12 None is
immortal and cannot be freed.
"""

from __future__ import annotations

import os
import sys

import pytest

needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run")


@needs_display
@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_resizing_the_main_window_keeps_references_to_none(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer(show=True)
    for k, name in enumerate(("Segment", "Fat and areas", "Project and fine-tune")):
        viewer.window.add_plugin_dock_widget("napari-paraspinal", name, tabify=k > 0)
    window = viewer.window._qt_window
    qtbot.wait(50)
    before = sys.getrefcount(None)
    for k in range(40):
        window.resize(1100 + (k % 2) * 120, 760)
        qtbot.wait(1)
    lost = before - sys.getrefcount(None)
    assert lost < 40 * 5, f"{lost} references to None lost in 40 resizes (a binding defect)"
