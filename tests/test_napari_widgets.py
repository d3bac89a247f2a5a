"""The dock widgets in a real viewer under Xvfb: segment, live fat table, export, legend keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from napari_paraspinal.models import DEFAULT_MODEL
from scipy import ndimage

from napari_paraspinal import __version__
from napari_paraspinal.core.geometry import Geometry
from napari_paraspinal.core.io import read_slice
from napari_paraspinal.core.labels import FAT_LABELS, LABELS, MF_L
from napari_paraspinal.core.writers import write_image
from napari_paraspinal.phantom import PhantomConfig, generate_phantom

pytestmark = pytest.mark.gui
needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run"
)
WAIT_MS = 60_000


def _flipped_phantom(tmp_path, seed: int = 5):
    """A phantom written left-right flipped, so display and native grids differ."""
    case = generate_phantom(seed, PhantomConfig(level="L4-L5"))
    g = case.image.geometry
    native = Geometry(shape=g.shape, spacing=g.spacing,
                      origin=tuple(g.index_to_world(g.shape[1] - 1, 0)),
                      direction=tuple(np.diag([-1.0, 1.0, -1.0]).ravel()))
    path = tmp_path / "flipped.nii.gz"
    write_image(case.image.with_data(case.image.data[:, ::-1].copy(), geometry=native), path)
    return path, case.labels[:, ::-1].copy()


def _mean_dice(a: np.ndarray, b: np.ndarray) -> float:
    scores = [2 * np.sum((a == v) & (b == v)) / max(1, np.sum(a == v) + np.sum(b == v))
              for v in range(1, len(LABELS) + 1)]
    return float(np.mean(scores))


def _segment(widget, qtbot) -> None:
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def test_manifest_lists_the_widgets() -> None:
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    widgets = pm.get_manifest("napari-paraspinal").contributions.widgets
    assert [w.display_name for w in widgets] == ["Segment", "Fat and areas", "Export",
                                                 "Labels legend", "Project and fine-tune"]


def test_widget_work_is_headless() -> None:
    code = ("import sys\n"
            "import napari_paraspinal._napari.slices, napari_paraspinal._napari.tasks\n"
            "import napari_paraspinal._napari.report, napari_paraspinal._napari.segment_proc\n"
            "print([m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'qtpy', 'napari', 'vispy', 'magicgui', 'superqt')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_layer_to_slices_undoes_the_display_orientation(tmp_path) -> None:
    from napari_paraspinal._napari.layers import image_layer, labels_layer
    from napari_paraspinal._napari.slices import layer_to_slices, native_planes

    path, truth = _flipped_phantom(tmp_path)
    native = read_slice(path)
    planes = [native, native.with_data(native.data * 2)]
    data, kwargs, _ = image_layer(planes, name="stack")
    image = SimpleNamespace(data=data, **kwargs)
    slices = layer_to_slices(image)
    assert [s.geometry for s in slices] == [p.geometry for p in planes]
    np.testing.assert_array_equal(slices[1].data, planes[1].data)
    lab_data, lab_kwargs, _ = labels_layer(np.stack([truth, truth]), kwargs)
    labels = SimpleNamespace(data=lab_data, **lab_kwargs)
    np.testing.assert_array_equal(native_planes(labels, image)[1], truth)


@needs_display
def test_segment_measure_edit_export(make_napari_viewer, qtbot, tmp_path) -> None:
    from openpyxl import load_workbook

    from napari_paraspinal._napari.export_widget import ExportWidget
    from napari_paraspinal._napari.layers import native_labels
    from napari_paraspinal._napari.measure_widget import MeasureWidget
    from napari_paraspinal._napari.segment_widget import SegmentWidget
    from napari_paraspinal._napari.slices import LEVEL_KEY, MODEL_KEY, ROLE_KEY

    path, truth = _flipped_phantom(tmp_path)
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(path), plugin="napari-paraspinal")
    seg, measure, export = SegmentWidget(viewer), MeasureWidget(viewer), ExportWidget(viewer)
    for w in (seg, measure, export):
        viewer.window.add_dock_widget(w)
    seg.level_combo.setCurrentText("L4-L5")
    seg.bias_check.setChecked(True)
    seg.uncertainty_check.setChecked(True)
    _segment(seg, qtbot)

    labels = viewer.layers["flipped labels"]
    assert type(labels).__name__ == "Labels"
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    for lab in LABELS:
        np.testing.assert_allclose(labels.colormap.map(np.array([lab.value]))[0], lab.rgba)
    predicted, _ = native_labels(labels.data, labels.metadata)
    assert _mean_dice(predicted, truth) >= 0.9
    assert labels.metadata[MODEL_KEY].startswith(f"{DEFAULT_MODEL} v")
    assert labels.metadata[LEVEL_KEY] == ["L4-L5"]
    assert viewer.layers["flipped N4 bias"].metadata[ROLE_KEY] == "bias"
    unsure = viewer.layers["flipped uncertainty"]
    assert unsure.data.shape == labels.data.shape
    assert 0.0 <= unsure.data.min() and unsure.data.max() <= 1.0
    # the model is least sure on the borders between structures, not inside them
    interior = ndimage.binary_erosion(labels.data > 0, iterations=3)
    border = (labels.data > 0) & ~ndimage.binary_erosion(labels.data > 0)
    assert unsure.data[border].mean() > unsure.data[interior].mean()

    # the live table: measured once the labels appear, again after an edit
    assert measure.labels_combo.layer() is labels
    qtbot.waitUntil(lambda: measure.last is not None, timeout=WAIT_MS)
    before = float(measure.table.item(MF_L - 1, 1).text())
    assert before == pytest.approx(measure.last.row["MF_L_csa_mm2"], abs=0.1)
    rows, cols = np.nonzero(labels.data == MF_L)
    block = (rows, cols) if rows.size < 20 else (rows[rows < np.median(rows)],
                                                 cols[rows < np.median(rows)])
    with qtbot.waitSignal(measure.measured, timeout=WAIT_MS):
        labels.data_setitem(block, 0)
    after = float(measure.table.item(MF_L - 1, 1).text())
    assert after < before - 1.0
    edited = np.array(labels.data)

    with qtbot.waitSignal(measure.measured, timeout=WAIT_MS):
        measure.method_combo.setCurrentText("otsu")
        measure.overlay_check.setChecked(True)
    fat = viewer.layers["flipped labels fat"]
    assert fat.data.any()
    assert not fat.data[~np.isin(labels.data, FAT_LABELS)].any()

    # export: numbers are numbers, provenance says where the labels came from
    export.method_combo.setCurrentText("otsu")
    xlsx, csv = export.export(tmp_path / "out" / "measurements")
    assert xlsx.suffix == ".xlsx" and csv.exists()
    wb = load_workbook(xlsx)
    assert wb.sheetnames == ["measurements", "provenance"]  # as `paraspinal run` on one slice
    header = [c.value for c in wb["measurements"][1]]
    values = dict(zip(header, [c.value for c in wb["measurements"][2]], strict=True))
    assert (values["status"], values["slice"], values["level"]) == ("segmented", 0, "L4-L5")
    assert values["registration_flagged"] is False  # a phantom the model segments well
    assert isinstance(values["MF_L_csa_mm2"], float)
    assert values["MF_L_csa_mm2"] == pytest.approx(measure.last.row["MF_L_csa_mm2"])
    assert values["MF_L_fat_pct"] == pytest.approx(measure.last.row["MF_L_fat_pct"], abs=0.01)
    prov_header = [c.value for c in wb["provenance"][1]]
    prov = dict(zip(prov_header, [c.value for c in wb["provenance"][2]], strict=True))
    assert prov["software"] == f"napari-paraspinal {__version__}"
    assert "edited after segmentation" in prov["labels"]
    assert json.loads(prov["fat_method"])["method"] == "otsu"

    # segmenting again keeps the edited layer, renamed and hidden, and writes a fresh one
    _segment(seg, qtbot)
    kept = [ly for ly in viewer.layers if ly.name.startswith("flipped labels (kept")]
    assert len(kept) == 1 and kept[0] is labels and not labels.visible
    np.testing.assert_array_equal(labels.data, edited)
    fresh = viewer.layers["flipped labels"]
    assert fresh is not labels and (fresh.data == MF_L).sum() > (edited == MF_L).sum()


def _stack_and_widget(make_napari_viewer) -> tuple:
    """A viewer with a 4-slice phantom stack (4 mm apart) and the Segment widget set to
    segment all of it at L4-L5."""
    from napari_paraspinal._napari.layers import image_layer
    from napari_paraspinal._napari.segment_widget import ALL, SegmentWidget

    case = generate_phantom(6, PhantomConfig(level="L4-L5"))
    g = case.image.geometry
    planes = [case.image.with_data(case.image.data.copy(), geometry=Geometry(
        g.shape, g.spacing, (g.origin[0], g.origin[1], g.origin[2] + 4.0 * k), g.direction))
        for k in range(4)]
    data, kwargs, _ = image_layer(planes, name="stack")
    viewer = make_napari_viewer()
    viewer.add_image(data, **kwargs)
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg)
    seg.level_combo.setCurrentText("L4-L5")
    seg.planes_combo.setCurrentText(ALL)
    return viewer, seg


@needs_display
def test_cancel_stops_before_the_next_slice(make_napari_viewer, qtbot) -> None:
    viewer, seg = _stack_and_widget(make_napari_viewer)
    worker = seg.start()
    steps = []
    worker.yielded.connect(lambda step: (steps.append(step), seg.cancel()))
    qtbot.waitUntil(lambda: seg.worker is None, timeout=WAIT_MS)

    assert worker.abort_requested
    done = [s for s in steps if s.segmentation is not None]
    assert len(done) < 4
    filled = [k for k in range(4) if viewer.layers["stack labels"].data[k].any()] if done else []
    assert filled == [s.plane for s in done]
    assert seg.status.text().startswith("cancelled")


@needs_display
def test_a_bad_model_folder_is_reported(make_napari_viewer, qtbot, tmp_path) -> None:
    from napari_paraspinal._napari.segment_widget import SegmentWidget

    path, _ = _flipped_phantom(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-paraspinal")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg)
    seg.set_model_path(tmp_path / "no-model")
    _segment(seg, qtbot)
    assert seg.status.text().startswith("failed:") and "no model bundle" in seg.status.text()
    assert seg.run_button.isEnabled() and "flipped labels" not in viewer.layers


@needs_display
def test_legend_keys_pick_labels(make_napari_viewer) -> None:
    from napari.utils.key_bindings import KeymapHandler

    from napari_paraspinal._napari.legend import LegendWidget

    viewer = make_napari_viewer()
    for name in ("Segment", "Fat and areas", "Export"):  # the manifest's factories work
        viewer.window.add_plugin_dock_widget("napari-paraspinal", name)
    _, legend = viewer.window.add_plugin_dock_widget("napari-paraspinal", "Labels legend")
    assert isinstance(legend, LegendWidget)
    assert legend.list.count() == len(LABELS)
    viewer.open_sample("napari-paraspinal", "phantom_l4l5")  # bound when inserted
    labels = viewer.layers["phantom L4-L5 labels"]
    viewer.layers.selection.active = labels

    handler = KeymapHandler()
    handler.keymap_providers = [labels, viewer]  # what the canvas consults, in its order
    assert handler.press_key("5")
    assert labels.selected_label == 5 and labels.mode == "paint"
    assert handler.press_key("0")
    assert labels.mode == "erase"
    legend.select(3)
    assert labels.selected_label == 3
    legend.contour_check.setChecked(True)
    assert labels.contour == 1
    legend.contour_check.setChecked(False)
    assert labels.contour == 0


def test_parse_planes() -> None:
    from napari_paraspinal._napari.tasks import parse_planes

    assert parse_planes("3, 5-7", 10) == [3, 5, 6, 7]
    assert parse_planes("2;2,1", 4) == [2, 1]
    for bad in ("", "x", "3-1", "9", "-1"):
        with pytest.raises(ValueError):
            parse_planes(bad, 5)


@needs_display
def test_chosen_slices_are_the_only_ones_segmented(make_napari_viewer, qtbot) -> None:
    from napari_paraspinal._napari.layers import image_layer
    from napari_paraspinal._napari.segment_widget import CHOSEN, SegmentWidget

    case = generate_phantom(7, PhantomConfig(level="L5-S1"))
    g = case.image.geometry
    planes = [case.image.with_data(case.image.data.copy(), geometry=Geometry(
        g.shape, g.spacing, (g.origin[0], g.origin[1], g.origin[2] + 4.0 * k), g.direction))
        for k in range(3)]
    data, kwargs, _ = image_layer(planes, name="stack3")
    viewer = make_napari_viewer()
    viewer.add_image(data, **kwargs)
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg)
    seg.level_combo.setCurrentText("L5-S1")
    seg.planes_combo.setCurrentText(CHOSEN)
    seg.planes_edit.setText("7")
    assert seg.start() is None and "0-2" in seg.status.text()  # out of range: refused
    seg.planes_edit.setText("2")
    seg.start()
    qtbot.waitUntil(lambda: seg.worker is None, timeout=WAIT_MS)
    labels = viewer.layers["stack3 labels"].data
    assert [bool(labels[k].any()) for k in range(3)] == [False, False, True]


@needs_display
def test_painting_during_a_run_is_never_disturbed(make_napari_viewer, qtbot) -> None:
    """A person paints into the layer a run writes into: the layer keeps its name,
    visibility, pixels, brush and mode and stays active; results of the planes painted
    go to a separate layer, the others land in place."""
    from napari_paraspinal._napari.slices import LEVEL_KEY, WRITTEN_KEY, fingerprint

    viewer, seg = _stack_and_widget(make_napari_viewer)
    seg.uncertainty_check.setChecked(True)  # a helper layer is added during the run too
    _segment(seg, qtbot)
    labels = viewer.layers["stack labels"]
    first = np.array(labels.data)
    assert all(first[k].any() for k in range(4))
    labels.data[:] = 0  # as if written by the widget: what a second run may overwrite
    labels.metadata = {**labels.metadata, WRITTEN_KEY: fingerprint(labels.data)}
    labels.refresh()
    n_layers = len(viewer.layers)

    worker = seg.start()
    assert worker is not None and seg.writer.target is labels
    viewer.layers.selection.active = labels
    labels.mode = "paint"
    labels.selected_label = 7
    labels.brush_size = 5
    labels.paint((1, 40, 40), 7)  # before any result is shown: plane 1 is being edited

    def paint_plane_3(step) -> None:  # after the first result is in, plane 3 is edited
        if step.plane is not None and not labels.data[3].any():
            labels.paint((3, 60, 60), 7)

    worker.yielded.connect(paint_plane_3)
    qtbot.waitUntil(lambda: seg.worker is None, timeout=WAIT_MS)

    assert labels.name == "stack labels" and labels.visible
    assert viewer.layers.selection.active is labels
    assert str(labels.mode) == "paint" and labels.selected_label == 7
    for plane, (r, c) in ((1, (40, 40)), (3, (60, 60))):  # only the brush strokes
        painted = labels.data[plane]
        assert painted[r, c] == 7 and set(np.unique(painted)) == {0, 7}
    for plane in (0, 2):  # not edited: the results landed in place
        np.testing.assert_array_equal(labels.data[plane], first[plane])
    assert labels.metadata[LEVEL_KEY][0] == "L4-L5"
    # the painted planes' results are in one separate layer, the only labels layer added
    (side,) = [ly for ly in viewer.layers if ly.name.startswith("stack labels (run ")]
    assert len(viewer.layers) == n_layers + 1 and side.visible
    for plane in (1, 3):
        np.testing.assert_array_equal(side.data[plane], first[plane])
    assert not side.data[0].any() and not side.data[2].any()
    assert side.name in seg.status.text() and "slices 1, 3 were edited" in seg.status.text()
    # edited: a third run keeps the layer (renamed, hidden) only when it starts
    assert seg.writer.target is labels and labels.metadata[WRITTEN_KEY] != fingerprint(
        labels.data)


def test_segment_in_process_reports_the_childs_failure(tmp_path) -> None:
    """The child process's error reaches the caller with its message (no GUI needed)."""
    from napari_paraspinal._napari.job_worker import JobError
    from napari_paraspinal._napari.segment_proc import segment_in_process

    image = generate_phantom(5, PhantomConfig(level="L4-L5")).image
    steps = segment_in_process([image], [0], tmp_path / "no-model")
    with pytest.raises(JobError, match="no model bundle"):
        list(steps)
