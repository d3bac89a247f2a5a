"""The Project and fine-tune widget in a real viewer under Xvfb, and its plain functions.

Cases are phantom slices written as NIfTI; the first is written left-right flipped, so the
viewer's canonical view and the file's native grid differ and every save must undo it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_paraspinal.core.geometry import Geometry
from napari_paraspinal.core.io import read_slice
from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R
from napari_paraspinal.core.writers import write_image
from napari_paraspinal.project import Project
from napari_paraspinal.segment import default_model_path

pytestmark = pytest.mark.gui
needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run"
)
WAIT_MS = 60_000
PARTIAL = [MF_L, MF_R, ES_L, ES_R]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory,
             phantom) -> list[tuple[Path, np.ndarray]]:
    """Three phantom slices as files with their native labels.

    The first is written left-right flipped (patient left at the first column), so its
    canonical view is the mirror of its native array.
    """
    folder = tmp_path_factory.mktemp("phantoms")
    out = []
    for seed, level in ((5, "L4-L5"), (7, "L5-S1"), (9, "L4-L5")):
        case = phantom(seed, level=level)
        image, labels = case.image, case.labels
        if not out:
            g = image.geometry
            flipped = Geometry(shape=g.shape, spacing=g.spacing,
                               origin=tuple(g.index_to_world(g.shape[1] - 1, 0)),
                               direction=tuple(np.diag([-1.0, 1.0, -1.0]).ravel()))
            image = image.with_data(image.data[:, ::-1].copy(), geometry=flipped)
            labels = labels[:, ::-1].copy()
        out.append((write_image(image, folder / f"p{seed}.nii.gz"), labels))
    return out


def make_project(folder: Path, phantoms: list, kinds: dict[int, str]) -> tuple[Project, list]:
    """A project of the phantoms; ``kinds`` saves the true labels of some as that kind."""
    project = Project.init(folder)
    ids = []
    for k, (path, labels) in enumerate(phantoms):
        (cid,) = project.add([path]).ids
        if k in kinds:
            project.save_labels(cid, labels, kinds[k])
        ids.append(cid)
    return project, ids


def widget_and_project(make_napari_viewer, tmp_path: Path, phantoms: list,
                       kinds: dict[int, str]) -> tuple:
    """A viewer with the Project widget docked, and a (closed) project of the phantoms."""
    project, ids = make_project(tmp_path / "p", phantoms, kinds)
    root = project.root
    project.close()
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-paraspinal",
                                                     "Project and fine-tune")
    return viewer, widget, root, ids


def test_project_tasks_import_no_qt() -> None:
    code = ("import sys\n"
            "import napari_paraspinal._napari.project_tasks\n"
            "print([m for m in sys.modules if m.split('.')[0] in "
            "('PySide6', 'PyQt5', 'PyQt6', 'qtpy', 'napari', 'vispy', 'magicgui', "
            "'superqt')])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_case_layers_save_and_tidy(tmp_path, phantoms) -> None:
    """The plain functions on stand-in layers: load, edit, save, what may be removed."""
    from napari_paraspinal._napari import project_tasks as tasks

    project, ids = make_project(tmp_path / "p", phantoms, {0: "automatic"})
    assert [r.status for r in tasks.worklist(project)] == ["predicted", "new", "new"]
    assert tasks.summary(project).startswith("3 cases: 2 new, 1 predicted")
    (_, img_kw, _), (data, kw, _) = tasks.case_layers(project, ids[0])
    Labels = type("Labels", (SimpleNamespace,), {})  # noqa: N806 (duck-types napari's)
    labels = Labels(data=np.array(data), **kw)
    image = SimpleNamespace(data=None, **img_kw)
    assert not tasks.needs_saving(labels)
    assert set(map(id, tasks.tidy(project, [image, labels]))) == {id(image), id(labels)}

    labels.data[:5, :5] = MF_L
    assert tasks.needs_saving(labels)
    assert tasks.tidy(project, [image, labels]) == []  # unsaved: nothing goes
    assert tasks.blocking_edits(project, [image, labels]) == []  # predicted: not batched
    assert tasks.save_drafts(project, [image, labels]) == [ids[0]]
    assert set(map(id, tasks.tidy(project, [image, labels]))) == {id(image), id(labels)}
    labels.data[:2, :2] = MF_R  # edited after the draft: kept again
    assert tasks.tidy(project, [image, labels]) == []
    version = tasks.save_layer(project, labels, "corrected", PARTIAL)
    assert (version.kind, version.labelled) == ("corrected", PARTIAL)
    saved, _ = project.latest_labels(ids[0])
    np.testing.assert_array_equal(saved, labels.data[:, ::-1])  # flipped file: native = mirror
    assert not tasks.needs_saving(labels) and not tasks.has_draft(project, ids[0])

    # a segmentation written in the viewer (not by a person) is neither saved nor removed
    from napari_paraspinal._napari.slices import WRITTEN_KEY, fingerprint

    labels.data[:5, :5] = 0
    labels.metadata = {**labels.metadata, WRITTEN_KEY: fingerprint(labels.data)}
    assert tasks.unsaved(labels) and not tasks.needs_saving(labels)
    assert tasks.tidy(project, [image, labels]) == []
    project.close()


def test_drafts_keep_edits_until_a_version_is_saved(tmp_path, phantoms) -> None:
    """The plain functions: a draft of an edited layer, shown on reopening, ignored once a
    newer version exists, dropped by a save."""
    from napari_paraspinal._napari import project_tasks as tasks

    project, ids = make_project(tmp_path / "p", phantoms, {0: "automatic"})
    (_, _, _), (data, kw, _) = tasks.case_layers(project, ids[0])
    Labels = type("Labels", (SimpleNamespace,), {})  # noqa: N806 (duck-types napari's)
    labels = Labels(data=np.array(data), **kw)
    assert tasks.save_drafts(project, [labels]) == []  # nothing edited, nothing written
    labels.data[:4, :4] = MF_R
    assert tasks.save_drafts(project, [labels]) == [ids[0]]
    (_, _, _), (shown, kw2, _) = tasks.case_layers(project, ids[0])
    np.testing.assert_array_equal(shown, labels.data)
    assert kw2["metadata"][tasks.DRAFT_KEY]
    assert tasks.needs_saving(Labels(data=shown, **kw2))

    # a version saved elsewhere (e.g. another session) makes the draft stale: not shown
    truth = phantoms[0][1]
    project.save_labels(ids[0], truth, "corrected", labelled=PARTIAL)
    assert tasks.read_draft(project, ids[0]) is None
    (_, _, _), (shown, kw3, _) = tasks.case_layers(project, ids[0])
    assert tasks.DRAFT_KEY not in kw3["metadata"]

    # saving the layer drops its draft
    labels = Labels(data=np.array(shown), **kw3)
    labels.data[:4, :4] = MF_L
    tasks.save_drafts(project, [labels])
    assert tasks.draft_path(project, ids[0]).is_file()
    tasks.save_layer(project, labels, "corrected", PARTIAL)
    assert not tasks.draft_path(project, ids[0]).exists()
    project.close()


def test_a_flagged_case_carries_its_qc_until_a_person_saves(tmp_path, phantoms) -> None:
    """The model's QC flags of a case travel with its automatic labels into the layer (for
    the banner, table and export) and the worklist; a person's version drops them."""
    from napari_paraspinal._napari import project_tasks as tasks
    from napari_paraspinal._napari.slices import QC_KEY, flagged_planes, plane_qc

    project, ids = make_project(tmp_path / "p", phantoms, {0: "automatic", 1: "automatic"})
    project.set_qc(ids[0], {"registration_flagged": True, "registration_check": "MF asymmetry 70 %",
                            "registration_correlation": None})
    project.set_qc(ids[1], {"registration_flagged": False, "registration_check": "",
                            "registration_correlation": None})
    assert [r.qc for r in tasks.worklist(project)] == ["CHECK: MF asymmetry 70 %", "ok", ""]
    Labels = type("Labels", (SimpleNamespace,), {})  # noqa: N806 (duck-types napari's)
    (_, _, _), (data, kw, _) = tasks.case_layers(project, ids[0])
    labels = Labels(data=np.array(data), **kw)
    assert plane_qc(labels, 0)["registration_check"] == "MF asymmetry 70 %"
    assert flagged_planes([labels], (0.0, 0.0)) == [f"{ids[0]} labels: CHECK: MF asymmetry 70 %"]
    (_, _, _), (data1, kw1, _) = tasks.case_layers(project, ids[1])
    assert flagged_planes([Labels(data=data1, **kw1)], (0.0, 0.0)) == []

    labels.data[:3, :3] = MF_L
    tasks.save_layer(project, labels, "corrected", PARTIAL)
    assert plane_qc(labels, 0) is None and flagged_planes([labels], (0.0, 0.0)) == []
    (_, _, _), (_, kw2, _) = tasks.case_layers(project, ids[0])
    assert QC_KEY not in kw2["metadata"]
    project.close()


@needs_display
def test_vouches_reset_per_case_and_keys_pick_labels(make_napari_viewer, qtbot, tmp_path,
                                                     phantoms) -> None:
    """Check boxes follow the open case; nothing ticked saves nothing; keys 1-8/0 work on a
    case's labels with no legend docked; edits left behind come back as a draft."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_paraspinal._napari import project_tasks as tasks

    project, ids = make_project(tmp_path / "p", phantoms, {0: "automatic"})
    project.save_labels(ids[1], phantoms[1][1], "verified", labelled=PARTIAL)
    root = project.root
    project.close()
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-paraspinal",
                                                     "Project and fine-tune")
    widget.open_project(root)
    assert widget.open_case(ids[1])
    assert widget.labelled() == PARTIAL  # what this case was vouched for
    widget.set_labelled(range(1, 9))  # the user ticks everything here...
    assert widget.open_case(ids[0])
    assert widget.labelled() == []  # ...which is not carried to the next case
    assert widget.mark("corrected") is None and "tick the labels" in widget.status.text()
    assert len(widget.project.label_versions(ids[0])) == 1

    labels = viewer.layers[f"{ids[0]} labels"]
    canvas = viewer.window._qt_viewer.canvas.native
    for key, value in ((Qt.Key.Key_3, 3), (Qt.Key.Key_8, 8), (Qt.Key.Key_1, 1)):
        QTest.keyClick(canvas, key)
        assert (labels.selected_label, labels.mode) == (value, "paint")
    QTest.keyClick(canvas, Qt.Key.Key_0)
    assert labels.mode == "erase"

    assert not widget.unsaved_label.text()
    labels.data_setitem((np.arange(6), np.arange(6)), ES_L)
    edited = np.array(labels.data)
    assert "unsaved edits" in widget.unsaved_label.text()
    assert widget.open_case(ids[2])
    assert len(widget.project.label_versions(ids[0])) == 1  # a draft, not a version
    assert tasks.has_draft(widget.project, ids[0])
    assert widget.open_case(ids[0])
    np.testing.assert_array_equal(viewer.layers[f"{ids[0]} labels"].data, edited)
    assert "draft" in widget.status.text() and "unsaved edits" in widget.unsaved_label.text()
    assert widget.labelled() == []


@needs_display
def test_open_edit_mark_switch_and_activate(make_napari_viewer, tmp_path, phantoms) -> None:
    from napari_paraspinal._napari import project_tasks as tasks
    from napari_paraspinal._napari.layers import image_layer
    from napari_paraspinal._napari.project_tasks import CASE_KEY, PROJECT_KEY
    from napari_paraspinal._napari.project_widget import ProjectWidget

    viewer, widget, root, ids = widget_and_project(make_napari_viewer, tmp_path, phantoms,
                                                   {0: "automatic", 1: "automatic"})
    assert isinstance(widget, ProjectWidget)
    assert widget.open_project(root) is not None
    assert widget.worklist_ids() == ids
    assert widget.summary.text().startswith("3 cases")

    # open a case: image and labels on the canonical view, native geometry kept
    assert widget.open_case(ids[0])
    image, labels = viewer.layers[ids[0]], viewer.layers[f"{ids[0]} labels"]
    _, expected, _ = image_layer([read_slice(phantoms[0][0])], name="x")
    for layer in (image, labels):
        np.testing.assert_allclose(layer.scale, expected["scale"])
        np.testing.assert_allclose(layer.translate, expected["translate"])
        assert layer.metadata[CASE_KEY] == ids[0] and layer.metadata[PROJECT_KEY] == str(root)
    truth = phantoms[0][1]
    np.testing.assert_array_equal(labels.data, truth[:, ::-1])  # shown mirrored, as canonical
    assert viewer.layers.selection.active is labels

    # edit, then mark corrected vouching for multifidus and erector spinae only
    rows, cols = np.nonzero(labels.data == MF_L)
    labels.data_setitem((rows[:40], cols[:40]), 0)
    labels.data_setitem((np.arange(5), np.arange(5)), ES_R)
    edited = np.array(labels.data)
    widget.set_labelled(PARTIAL)
    assert widget.mark("corrected") is not None
    with Project.open(root) as store:
        saved, version = store.latest_labels(ids[0])
        assert (version.kind, version.labelled, version.version) == ("corrected", PARTIAL, 2)
        np.testing.assert_array_equal(saved, edited[:, ::-1])
        assert store.case(ids[0]).status == "corrected"
    row = widget.worklist_ids().index(ids[0])
    assert widget.table.item(row, 1).text() == "corrected"
    assert widget.table.item(row, 4).text() == "MF_L MF_R ES_L ES_R"

    # another case (double-click): unsaved edits become a draft, never a version
    assert not widget.unsaved_label.text()
    labels.data_setitem((np.arange(10, 15), np.arange(10, 15)), MF_R)
    edited = np.array(labels.data)
    assert "unsaved edits" in widget.unsaved_label.text()
    widget.table.cellDoubleClicked.emit(widget.worklist_ids().index(ids[1]), 0)
    assert widget.case_id == ids[1]
    assert ids[0] not in viewer.layers and f"{ids[0]} labels" not in viewer.layers
    assert widget.labelled() == [] and not widget.unsaved_label.text()  # reset for this case
    with Project.open(root) as store:
        assert store.latest_version(ids[0]).version == 2  # nothing saved unasked
        np.testing.assert_array_equal(tasks.read_draft(store, ids[0]), edited[:, ::-1])
    row = widget.worklist_ids().index(ids[0])
    assert widget.table.item(row, 5).text() == "unsaved draft"
    # an unedited case is not saved again; a case without labels opens empty
    assert widget.open_case(ids[2])
    assert len(widget.project.label_versions(ids[1])) == 1
    assert not viewer.layers[f"{ids[2]} labels"].data.any()
    assert f"{ids[1]} labels" not in viewer.layers

    # the filter shows one status
    widget.filter_combo.setCurrentText("corrected")
    assert widget.worklist_ids() == [ids[0]]

    # any registered model version can be made active again
    widget.project.register_model(default_model_path(), model_id="m1")
    widget.project.register_model(default_model_path(), model_id="m2", active=True)
    widget.refresh()
    assert widget.project.active_model().id == "m2"
    widget.activate("m1")
    assert widget.project.active_model().id == "m1"
    actives = [widget.models_table.item(r, 0).text() for r in range(2)]
    assert actives == ["●", ""] and "active model: m1" in widget.summary.text()
    widget.models_table.selectRow(1)
    widget.activate_button.click()
    assert widget.project.active_model().id == "m2"


@needs_display
def test_edits_are_autosaved_as_a_draft_after_the_last_stroke(make_napari_viewer, tmp_path,
                                                               phantoms) -> None:
    """A stroke arms the autosave; when it fires the edits are a draft on disk (so a killed
    app loses seconds, not the case), never a version, and a second project widget on the
    same folder (the app started again) offers them."""
    from napari_paraspinal._napari import project_tasks as tasks
    from napari_paraspinal._napari.project_widget import ProjectWidget

    viewer, widget, root, ids = widget_and_project(make_napari_viewer, tmp_path, phantoms,
                                                   {0: "automatic"})
    widget.open_project(root)
    assert widget.open_case(ids[0]) and not widget.autosave.isActive()
    labels = viewer.layers[f"{ids[0]} labels"]
    labels.data_setitem((np.arange(6), np.arange(6)), ES_L)
    edited = np.array(labels.data)
    draft = tasks.draft_path(widget.project, ids[0])
    assert widget.autosave.isActive() and not draft.exists()  # armed, not yet written
    widget.autosave.timeout.emit()  # what the timer does after the last stroke
    np.testing.assert_array_equal(tasks.read_draft(widget.project, ids[0]), edited[:, ::-1])
    assert "autosave" in widget.status.text() and "unsaved edits" in widget.unsaved_label.text()
    assert len(widget.project.label_versions(ids[0])) == 1  # a draft, not a version
    assert widget.autosave_draft() == []  # nothing new since: nothing rewritten

    # the first window never closed (killed): a new one opens the case with the edits
    other_viewer = make_napari_viewer()
    other = ProjectWidget(other_viewer)
    other.open_project(root)
    assert other.open_case(ids[0])
    np.testing.assert_array_equal(other_viewer.layers[f"{ids[0]} labels"].data, edited)
    assert "draft" in other.status.text()


@needs_display
def test_unsaved_edits_survive_closing_the_viewer(make_napari_viewer, tmp_path,
                                                  phantoms) -> None:
    """Edits nobody vouched for yet become drafts when the layer is deleted or the viewer
    closes; reopening the case shows them, still unsaved; a saved version drops the draft."""
    from napari_paraspinal._napari import project_tasks as tasks
    from napari_paraspinal._napari.project_widget import ProjectWidget

    viewer, widget, root, ids = widget_and_project(make_napari_viewer, tmp_path, phantoms,
                                                   {0: "automatic"})
    assert isinstance(widget, ProjectWidget)
    widget.open_project(root)
    assert widget.open_case(ids[0])
    labels = viewer.layers[f"{ids[0]} labels"]
    labels.data_setitem((np.arange(5), np.arange(5)), ES_R)
    edited = np.array(labels.data)

    # deleted by hand: kept as a draft (native grid: the file is stored mirrored)
    viewer.layers.remove(labels)
    draft = tasks.draft_path(widget.project, ids[0])
    assert draft.is_file() and "draft" in widget.status.text()
    np.testing.assert_array_equal(tasks.read_draft(widget.project, ids[0]), edited[:, ::-1])

    # reopened: the draft is shown, unsaved, and a mark saves it and drops the draft
    assert widget.open_case(ids[0])
    labels = viewer.layers[f"{ids[0]} labels"]
    np.testing.assert_array_equal(labels.data, edited)
    assert tasks.needs_saving(labels) and "draft" in widget.status.text()
    widget.set_labelled(PARTIAL)
    assert widget.mark("corrected") is not None
    assert not draft.exists()
    with Project.open(root) as store:
        np.testing.assert_array_equal(store.latest_labels(ids[0])[0], edited[:, ::-1])

    # the viewer closed with new edits: a draft on the version just saved
    labels.data_setitem((np.arange(10, 14), np.arange(10, 14)), MF_L)
    edited = np.array(labels.data)
    viewer.close()
    with Project.open(root) as store:
        np.testing.assert_array_equal(tasks.read_draft(store, ids[0]), edited[:, ::-1])
        assert store.latest_version(ids[0]).version == 2  # nothing saved as a version


@needs_display
def test_segment_new_cases_waits_for_edits_to_be_marked(make_napari_viewer, qtbot, tmp_path,
                                                       phantoms) -> None:
    from napari_paraspinal._napari.project_widget import ProjectWidget

    project, ids = make_project(tmp_path / "p", phantoms[:2], {})
    root = project.root
    project.close()
    viewer = make_napari_viewer()
    widget = ProjectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_project(root)
    widget.open_case(ids[0])
    labels = viewer.layers[f"{ids[0]} labels"]
    rows, cols = np.nonzero(phantoms[0][1][:, ::-1] == MF_L)
    labels.data_setitem((rows, cols), MF_L)  # a person draws a muscle in the new case
    edited = np.array(labels.data)

    # the batch would segment over the drawing: refused until the case is marked
    assert widget.segment_new() is None and widget.worker is None
    assert f"unsaved edits in {ids[0]}" in widget.status.text()
    with Project.open(root) as store:
        assert store.latest_version(ids[0]) is None  # nothing saved unasked
    widget.set_labelled([MF_L])
    assert widget.mark("corrected") is not None
    worker = widget.segment_new()
    assert worker is not None and not widget.segment_button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    result = widget.last_result
    assert result.segmented == [ids[1]] and not result.failed
    with Project.open(root) as store:
        saved, version = store.latest_labels(ids[0])
        assert version.kind == "corrected"  # saved before the batch: never segmented over
        np.testing.assert_array_equal(saved, edited[:, ::-1])
        _, auto = store.latest_labels(ids[1])
        assert auto.kind == "automatic" and store.case(ids[1]).status == "predicted"
    np.testing.assert_array_equal(viewer.layers[f"{ids[0]} labels"].data, edited)
    assert widget.job_status.text().startswith("done: 1 segmented")
    assert widget.segment_button.isEnabled()


@needs_display
def test_finetune_cancel_registers_nothing(make_napari_viewer, qtbot, tmp_path,
                                           phantoms) -> None:
    from napari_paraspinal._napari.project_widget import ProjectWidget

    project, _ = make_project(tmp_path / "p", phantoms[:2], {0: "corrected", 1: "verified"})
    project.register_model(default_model_path(), model_id="shipped", active=True)
    root = project.root
    project.close()
    viewer = make_napari_viewer()
    widget = ProjectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_project(root)
    events = []
    widget._relay.progress.connect(lambda e: (events.append(e), widget.cancel()))
    worker = widget.start_finetune(replay=0, replay_check=0, epochs=1, joint_epochs=0,
                                   device="cpu")
    assert worker is not None and widget.cancel_button.isEnabled()
    assert not widget.finetune_button.isEnabled()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)

    assert events and events[0].stage == "prepare" and events[0].total == 2
    assert widget.last_result.status == "cancelled" and widget.last_result.model_id is None
    assert widget.result_label.text().startswith("cancelled")
    with Project.open(root) as store:
        assert [m.id for m in store.models()] == ["shipped"]
        assert store.active_model().id == "shipped"
    assert widget.finetune_button.isEnabled() and not widget.cancel_button.isEnabled()
    widget.curve.set_history([{"loss": float("nan"), "val_dice": 0.5},
                              {"loss": 0.8, "val_dice": 0.6}, {"loss": 0.5, "val_dice": 0.7}])
    assert not widget.curve.grab().isNull()  # the curve paints
    loss, dice = widget.curve.series()  # the NaN loss is left out, every Dice is drawn
    assert loss == [(2, 0.8), (3, 0.5)] and dice == [(1, 0.5), (2, 0.6), (3, 0.7)]
    assert [tuple(line.get_xdata()) for line in widget.curve.loss_axes.lines] == [(2, 3)]
    assert widget.curve.dice_axes.get_ylim() == (0.0, 1.0)
    assert widget.curve.loss_axes.get_xlabel() == "epoch"


@needs_display
def test_worklist_sorts_filters_and_keys_walk_it(make_napari_viewer, qtbot, tmp_path,
                                                 phantoms) -> None:
    """Uncertainty and edited columns, sorting by a header (rows still open their own case),
    the case-id filter, and the keyboard flow sent as real key events under Xvfb: PageDown/
    PageUp, "Next: most uncertain", Ctrl+Return (verified), Ctrl+Shift+Return (corrected);
    and the time each case was open."""
    import time

    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_paraspinal._napari.project_widget_layout import ALL, WORK_COLUMNS
    from napari_paraspinal.project.effort import OPEN_TIME, effort
    from napari_paraspinal.project.values import os_user
    from napari_paraspinal.project.worklist import set_uncertainty

    project, ids = make_project(tmp_path / "p", phantoms, {0: "automatic", 1: "automatic"})
    set_uncertainty(project, ids[0], 0.1)
    set_uncertainty(project, ids[1], 0.6)
    root = project.root
    project.close()
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-paraspinal",
                                                     "Project and fine-tune")
    started = time.monotonic()
    widget.open_project(root)
    column = {name: k for k, name in enumerate(WORK_COLUMNS)}

    def cells(name: str) -> list[str]:
        return [widget.table.item(r, column[name]).text() for r in range(len(ids))]

    assert widget.worklist_ids() == ids  # added order until a header is clicked
    assert cells("uncertainty") == ["0.100", "0.600", ""]
    assert cells("edited") == ["", "", ""]

    # the case-id filter, on top of the status filter
    widget.id_filter.setText(ids[2].upper())
    assert widget.worklist_ids() == [ids[2]]
    widget.id_filter.clear()
    assert widget.worklist_ids() == ids

    # keys, sent as key events to the canvas (the shortcuts need the window active)
    window = viewer.window._qt_window
    window.activateWindow()
    window.raise_()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=5000)

    def press(key: Qt.Key, modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier
              ) -> None:
        QTest.keyClick(viewer.window._qt_viewer.canvas.native, key, modifiers)

    # "Next: most uncertain": the most uncertain case still to do, then the next one
    widget.uncertain_check.setChecked(True)
    press(Qt.Key.Key_PageDown)
    assert widget.case_id == ids[1]
    press(Qt.Key.Key_PageDown)
    assert widget.case_id == ids[0]
    widget.uncertain_check.setChecked(False)

    # sorted by uncertainty, most uncertain first: each row still opens its own case, and
    # PageDown/PageUp follow the rows as shown
    widget.table.sortByColumn(column["uncertainty"], Qt.SortOrder.DescendingOrder)
    assert widget.worklist_ids() == [ids[1], ids[0], ids[2]]
    widget.table.cellDoubleClicked.emit(0, 0)
    assert widget.case_id == ids[1]
    press(Qt.Key.Key_PageDown)
    assert widget.case_id == ids[0]
    press(Qt.Key.Key_PageUp)
    assert widget.case_id == ids[1]
    press(Qt.Key.Key_PageUp)
    assert widget.case_id == ids[1] and "end of the worklist" in widget.status.text()

    # accept with one status shown: the case leaves the list, PageDown opens the row that
    # took its place
    widget.filter_combo.setCurrentText("predicted")
    assert widget.worklist_ids() == [ids[1], ids[0]]
    widget.set_labelled(PARTIAL)
    press(Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    with Project.open(root) as store:
        assert store.latest_version(ids[1]).kind == "verified"
    assert widget.worklist_ids() == [ids[0]]
    press(Qt.Key.Key_PageDown)
    assert widget.case_id == ids[0]

    # mark corrected from the keyboard; the export's edit effort counts the changed pixels
    labels = viewer.layers[f"{ids[0]} labels"]
    labels.data_setitem((np.arange(4), np.arange(4)), ES_R)
    widget.set_labelled(PARTIAL)
    press(Qt.Key.Key_Return,
          Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    with Project.open(root) as store:
        assert store.latest_version(ids[0]).kind == "corrected"
        first = store.read_version(store.label_versions(ids[0])[0])
        assert effort(store, ids[0]).edit_pixels == int(
            (store.latest_labels(ids[0])[0] != first).sum()) > 0
    widget.filter_combo.setCurrentText(ALL)
    for cid in ids[:2]:
        edited = widget.table.item(widget.worklist_ids().index(cid), column["edited"]).text()
        assert edited.startswith(f"{os_user() or '?'} 20") and edited[-3] == ":"

    # most uncertain again: only the new case is left, then none
    widget.uncertain_check.setChecked(True)
    press(Qt.Key.Key_PageDown)
    assert widget.case_id == ids[2]
    press(Qt.Key.Key_PageDown)
    assert widget.case_id == ids[2] and "no case left" in widget.status.text()

    # each opening was timed when the case was closed (ids[2] is still open until here)
    widget.close_case()
    elapsed = time.monotonic() - started
    with Project.open(root) as store:
        timed = [(cid, float(s)) for _, cid, action, s in store.history()
                 if action == OPEN_TIME]
        assert [cid for cid, _ in timed] == [ids[1], ids[0], ids[1], ids[0], ids[1], ids[0],
                                             ids[2]]
        assert all(0 <= s for _, s in timed) and sum(s for _, s in timed) <= elapsed
        assert effort(store, ids[0]).seconds_open == pytest.approx(
            sum(s for cid, s in timed if cid == ids[0]))
