"""The annotator's workstation in a real viewer under Xvfb: a slice the core's QC flags is
marked wherever its numbers appear (Segment text, viewer banner, Fat & areas table, export,
the same as the command line), and keys 1-8 / 0 pick labels whatever is docked.

The flagged slice is real: the ``lpm_tum01`` Dixon water image of ``../shared/data`` stored
with anterior and posterior exchanged (``_helpers_real``): the shipped model misses the
muscles of slice 14, which its QC flags, and passes slice 4.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from _helpers_real import FLAGGED, PASSED, upside_down

from napari_paraspinal.core.writers import write_image
from napari_paraspinal.phantom import PhantomConfig, generate_phantom
from napari_paraspinal.plausibility import CHECK, FLAG
from napari_paraspinal.realdata import default_real_data_dir

pytestmark = pytest.mark.gui
needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run"
)
WATER = default_real_data_dir() / "lpm_tum01" / "water.nii.gz"
needs_real = pytest.mark.skipif(
    not WATER.is_file(),
    reason=f"real case lpm_tum01 not found at {WATER} (set PARASPINAL_REAL_DATA)")
WAIT_MS = 120_000


def _sheet(wb, name: str) -> list[dict]:
    rows = list(wb[name].iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


@needs_display
@needs_real
def test_a_flagged_slice_is_marked_wherever_its_numbers_appear(make_napari_viewer, qtbot,
                                                               tmp_path) -> None:
    from openpyxl import load_workbook

    from napari_paraspinal._napari.export_widget import ExportWidget
    from napari_paraspinal._napari.measure_widget import HEADERS, MeasureWidget
    from napari_paraspinal._napari.segment_widget import CHOSEN, SegmentWidget
    from napari_paraspinal._napari.slices import QC_KEY
    from napari_paraspinal._napari.viewer_hooks import text_overlay
    from napari_paraspinal.pipeline import RunConfig
    from napari_paraspinal.run_batch import run

    water = upside_down(WATER, tmp_path / "input" / "water.nii.gz")
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(water), plugin="napari-paraspinal")
    seg, measure, export = SegmentWidget(viewer), MeasureWidget(viewer), ExportWidget(viewer)
    for w in (seg, measure, export):
        viewer.window.add_dock_widget(w)
    measure.n4_check.setChecked(False)
    seg.device_combo.setCurrentText("cpu")
    seg.planes_combo.setCurrentText(CHOSEN)
    seg.planes_edit.setText(f"{PASSED}, {FLAGGED}")
    steps = []
    worker = seg.start()
    worker.yielded.connect(steps.append)  # queued: nothing is delivered before the loop runs
    qtbot.waitUntil(lambda: seg.worker is None, timeout=WAIT_MS)

    # the Segment widget: per-plane message and the end-of-run line
    done = {s.plane: s for s in steps if s.segmentation is not None}
    assert set(done) == {PASSED, FLAGGED}
    reg = done[FLAGGED].segmentation.preprocessed.registration
    assert reg.flagged and reg.reasons
    assert not done[PASSED].segmentation.preprocessed.registration.flagged
    assert done[FLAGGED].message.startswith(f"plane {FLAGGED}: CHECK: {reg.reasons[0]}")
    assert "CHECK" not in done[PASSED].message
    assert f"plane {FLAGGED}: CHECK: {reg.reasons[0]}" in seg.status.text()
    assert f"plane {PASSED}:" not in seg.status.text()
    labels = viewer.layers["water labels"]
    assert labels.metadata[QC_KEY][FLAGGED][CHECK] == "; ".join(reg.reasons)
    assert labels.metadata[QC_KEY][PASSED][FLAG] is False

    # the viewer's banner follows the shown plane
    overlay = text_overlay(viewer)
    viewer.dims.set_current_step(0, FLAGGED)
    qtbot.waitUntil(lambda: overlay.visible and f"plane {FLAGGED}: CHECK" in overlay.text)
    assert reg.reasons[0] in overlay.text and "water labels" in overlay.text
    qc_col = HEADERS.index("QC")
    qtbot.waitUntil(lambda: measure.last is not None and measure._last_plane == FLAGGED,
                    timeout=WAIT_MS)
    cells = [measure.table.item(r, qc_col).text() for r in range(measure.table.rowCount())]
    assert all(c.startswith("CHECK") for c in cells), cells
    assert any(reg.reasons[0] in c for c in cells) or "MF" not in reg.reasons[0]
    assert f"plane {FLAGGED}: CHECK: {reg.reasons[0]}" in measure.qc_label.text()

    viewer.dims.set_current_step(0, PASSED)
    qtbot.waitUntil(lambda: not overlay.visible)
    qtbot.waitUntil(lambda: measure._last_plane == PASSED, timeout=WAIT_MS)
    cells = [measure.table.item(r, qc_col).text() for r in range(measure.table.rowCount())]
    assert cells == ["ok"] * len(cells) and "QC ok" in measure.qc_label.text()

    # the export: the command line's status and QC columns, with the same values
    export.n4_check.setChecked(False)
    xlsx, _ = export.export(tmp_path / "gui" / "measurements")
    wb = load_workbook(xlsx)
    gui = {r["slice"]: r for r in _sheet(wb, "measurements")}
    assert set(gui) == {PASSED, FLAGGED}
    (prov,) = _sheet(wb, "provenance")
    assert set(json.loads(prov["qc_flags"])) == {f"slice {FLAGGED}"}
    results = run([water], RunConfig(out_dir=tmp_path / "cli", slices=[PASSED, FLAGGED],
                                     overlays=False, n4=None, device="cpu"))
    cli = {r["slice"]: r for r in results[0].rows}
    for k in (PASSED, FLAGGED):
        assert {"status", FLAG, CHECK} <= set(gui[k]) & set(cli[k])
        assert gui[k]["status"] == cli[k]["status"] == "segmented"
        assert bool(gui[k][FLAG]) is bool(cli[k][FLAG]) is (k == FLAGGED)
        assert (gui[k][CHECK] or "") == cli[k][CHECK]
        assert gui[k]["MF_L_csa_mm2"] == pytest.approx(cli[k]["MF_L_csa_mm2"], abs=0.1)


@needs_display
def test_label_keys_work_whatever_is_docked(make_napari_viewer, qtbot, tmp_path) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_paraspinal._napari.legend import LegendWidget
    from napari_paraspinal._napari.segment_widget import SegmentWidget

    def press(viewer, layer, key: Qt.Key) -> None:
        viewer.layers.selection.active = layer
        QTest.keyClick(viewer.window._qt_viewer.canvas.native, key)

    # nothing docked: the sample's labels layer
    viewer = make_napari_viewer()
    viewer.open_sample("napari-paraspinal", "phantom_l4l5")
    sample = viewer.layers["phantom L4-L5 labels"]
    press(viewer, sample, Qt.Key.Key_3)
    assert (sample.selected_label, sample.mode) == (3, "paint")

    # only the Segment widget: the labels layer it makes
    case = generate_phantom(5, PhantomConfig(level="L4-L5"))
    path = write_image(case.image, tmp_path / "slice.nii.gz")
    viewer.open(str(path), plugin="napari-paraspinal")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg)
    seg.image_combo.set_layer(viewer.layers["slice"])
    seg.level_combo.setCurrentText("L4-L5")
    assert seg.start() is not None
    qtbot.waitUntil(lambda: seg.worker is None, timeout=WAIT_MS)
    labels = viewer.layers["slice labels"]
    assert np.unique(labels.data).size == 9
    for key, value in ((Qt.Key.Key_3, 3), (Qt.Key.Key_7, 7), (Qt.Key.Key_8, 8),
                       (Qt.Key.Key_1, 1)):
        press(viewer, labels, key)
        assert (labels.selected_label, labels.mode) == (value, "paint")
    press(viewer, labels, Qt.Key.Key_0)
    assert labels.mode == "erase"

    # the legend, docked later, highlights what the keys pick
    legend = LegendWidget(viewer)
    viewer.window.add_dock_widget(legend)
    assert legend.highlighted() is None and "eraser" in legend.current.text()
    press(viewer, labels, Qt.Key.Key_5)
    assert legend.highlighted() == 5 and legend.list.item(4).font().bold()
    assert not legend.list.item(0).font().bold() and "MF_L" in legend.current.text()
    legend.list.itemClicked.emit(legend.list.item(7))
    assert labels.selected_label == 8 and legend.highlighted() == 8
    press(viewer, labels, Qt.Key.Key_0)
    assert legend.highlighted() is None and "eraser" in legend.current.text()
