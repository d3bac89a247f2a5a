"""Editing that annotators trust, in a real viewer under Xvfb: left and right colours that
cannot be confused, R/L/A/P letters at the image edges, Ctrl+S that writes NIfTI on the
image's grid and shows its errors, and a status-bar help line that names the plugin's keys.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from skimage.color import rgb2lab

from napari_paraspinal.core.geometry import Geometry
from napari_paraspinal.core.labels import BY_SHORT, LABELS, MF_L, PS_L, PS_R
from napari_paraspinal.core.writers import write_image
from napari_paraspinal.phantom import PhantomConfig, generate_phantom

needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run"
)


def _delta_e(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """CIE76 colour difference of two sRGB colours."""
    lab = rgb2lab(np.array([[a, b]], float) / 255.0)[0]
    return float(np.linalg.norm(lab[0] - lab[1]))


def test_left_and_right_colours_cannot_be_confused() -> None:
    for muscle in ("PS", "MF", "ES"):
        left, right = BY_SHORT[f"{muscle}_L"], BY_SHORT[f"{muscle}_R"]
        assert _delta_e(left.color, right.color) >= 60, muscle
    for a, b in itertools.combinations(LABELS, 2):
        assert _delta_e(a.color, b.color) >= 30, (a.short, b.short)
    # the rule the colours follow: the patient's left cool (blue > red), the right warm
    for lab in LABELS:
        r, _, b = lab.color
        if lab.side == "L":
            assert b > r, lab.short
        elif lab.side == "R":
            assert r > b, lab.short


def _flipped_phantom(tmp_path: Path, seed: int = 5) -> tuple[Path, np.ndarray]:
    """A phantom stored left-right flipped, so display and native grids differ."""
    case = generate_phantom(seed, PhantomConfig(level="L4-L5"))
    g = case.image.geometry
    native = Geometry(shape=g.shape, spacing=g.spacing,
                      origin=tuple(g.index_to_world(g.shape[1] - 1, 0)),
                      direction=tuple(np.diag([-1.0, 1.0, -1.0]).ravel()))
    path = tmp_path / "case 7" / "flipped.nii.gz"
    path.parent.mkdir()
    write_image(case.image.with_data(case.image.data[:, ::-1].copy(), geometry=native), path)
    return path, case.labels[:, ::-1].copy()


def _open_with_labels(viewer, tmp_path: Path):
    """The flipped phantom opened through the plugin, with its labels layer on top."""
    from napari_paraspinal._napari import viewer_hooks
    from napari_paraspinal._napari.layers import labels_layer

    path, native = _flipped_phantom(tmp_path)
    hooks = viewer_hooks.install(viewer)
    (image,) = viewer.open(str(path), plugin="napari-paraspinal")
    data, kwargs, _ = labels_layer(native, {"scale": image.scale, "translate": image.translate,
                                            "metadata": image.metadata}, name="flipped labels")
    labels = viewer.add_labels(data, **kwargs)
    return hooks, path, image, labels


@needs_display
def test_orientation_letters_mark_the_image_edges(make_napari_viewer, tmp_path) -> None:
    from napari_paraspinal._napari.export_widget import ExportWidget
    from napari_paraspinal._napari.layers import image_layer
    from napari_paraspinal._napari.orientation_markers import NAME, letter_positions
    from napari_paraspinal._napari.qt_common import is_helper

    viewer = make_napari_viewer()
    _, _, image, labels = _open_with_labels(viewer, tmp_path)
    markers = [ly for ly in viewer.layers if ly.name == NAME]
    assert len(markers) == 1 and is_helper(markers[0])
    marker = markers[0]
    assert viewer.layers[-1] is marker  # drawn over the images
    assert viewer.layers.selection.active is labels  # adding it did not steal the selection
    where = letter_positions(marker)
    assert set(where) == {"R", "L", "A", "P"}
    assert where["R"][1] < where["L"][1] and where["A"][0] < where["P"][0]
    # the letters agree with the anatomy: the left psoas is painted on the side marked L
    psoas_l = np.nonzero(labels.data == PS_L)[1].mean() * labels.scale[1] + labels.translate[1]
    psoas_r = np.nonzero(labels.data == PS_R)[1].mean() * labels.scale[1] + labels.translate[1]
    assert abs(psoas_l - where["L"][1]) < abs(psoas_l - where["R"][1])
    assert abs(psoas_r - where["R"][1]) < abs(psoas_r - where["L"][1])
    # inside the image, at mid-edges
    rows = image.translate[0] + np.array([0, image.data.shape[0] - 1]) * image.scale[0]
    cols = image.translate[1] + np.array([0, image.data.shape[1] - 1]) * image.scale[1]
    for row, col in where.values():
        assert rows[0] <= row <= rows[1] and cols[0] <= col <= cols[1]

    # a 3-D stack: still one layer, a 2-D one that napari shows on every plane
    case = generate_phantom(9, PhantomConfig(level="L5-S1"))
    moved = case.image.geometry
    second = case.image.with_data(case.image.data, geometry=Geometry(
        shape=moved.shape, spacing=moved.spacing, direction=moved.direction,
        origin=(moved.origin[0], moved.origin[1], moved.origin[2] + 4.0)))
    data, kwargs, _ = image_layer([case.image, second], name="stack")
    stack = viewer.add_image(data, **kwargs)
    assert stack.ndim == 3 and viewer.dims.ndim == 3
    assert [ly.name for ly in viewer.layers].count(NAME) == 1
    assert marker.ndim == 2 and viewer.layers[-1] is marker
    viewer.dims.set_current_step(0, 1)
    assert marker._view_data.shape == (4, 2)  # all four letters on the second plane too

    # layer pickers that loop over layers leave it out
    export = ExportWidget(viewer)
    names = {export.labels_combo.itemText(i) for i in range(export.labels_combo.count())}
    names |= {export.image_combo.itemText(i) for i in range(export.image_combo.count())}
    assert NAME not in names and "flipped labels" in names

    # no image, no letters
    for layer in [ly for ly in viewer.layers if ly.name != NAME]:
        viewer.layers.remove(layer)
    assert NAME not in [ly.name for ly in viewer.layers]


@needs_display
def test_save_writes_nifti_next_to_the_image_and_shows_errors(make_napari_viewer, tmp_path,
                                                              monkeypatch) -> None:
    from qtpy.QtGui import QKeySequence
    from qtpy.QtWidgets import QFileDialog

    from napari_paraspinal._napari.save_labels import default_path, save_labels_layer

    viewer = make_napari_viewer()
    hooks, path, image, labels = _open_with_labels(viewer, tmp_path)
    assert default_path(labels) == path.parent / "flipped_labels.nii.gz"
    sample = viewer.add_labels(labels.data, name="phantom L4-L5 labels",
                               metadata={**labels.metadata, "source": "phantom:L4-L5:seed=7"})
    assert default_path(sample) == Path.home() / "phantom_L4-L5_labels.nii.gz"
    viewer.layers.remove(sample)

    asked, errors = [], []
    saver = hooks.saver
    saver.ask_path = lambda parent, default: asked.append(default) or str(default)
    saver.show_error = lambda parent, message: errors.append(message)
    # Ctrl+S is ours in the window; napari's menu action no longer holds it
    assert saver.action.shortcut() == QKeySequence("Ctrl+S")
    assert saver.napari_action.shortcut().isEmpty()
    labels.data[5, 5] = MF_L  # an edit
    viewer.layers.selection.active = labels
    saver.action.trigger()
    out = path.parent / "flipped_labels.nii.gz"
    assert asked == [out] and errors == [] and saver.last_written == [str(out)]
    saved, source = sitk.ReadImage(str(out)), sitk.ReadImage(str(path))
    assert saved.GetSize() == source.GetSize()
    np.testing.assert_allclose(saved.GetSpacing(), source.GetSpacing())
    np.testing.assert_allclose(saved.GetOrigin(), source.GetOrigin())
    np.testing.assert_allclose(saved.GetDirection(), source.GetDirection())
    native = sitk.GetArrayFromImage(saved).reshape(labels.data.shape)
    assert native[5, -6] == MF_L  # canonical (5, 5) is native (5, last - 5)
    np.testing.assert_array_equal(np.sort(native, axis=None), np.sort(labels.data, axis=None))

    # a path whose parent is a file: the message names the file and the problem
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    bad = blocker / "labels.nii.gz"
    saver.ask_path = lambda parent, default: str(bad)
    assert saver.trigger() == []
    assert len(errors) == 1 and str(bad) in errors[0] and "Error" in errors[0]
    with pytest.raises(OSError):
        save_labels_layer(labels, bad)

    # cancelling the dialog writes nothing and shows nothing
    saver.ask_path = lambda parent, default: None
    assert saver.trigger() == [] and len(errors) == 1

    # the same key through the viewer keymap (a key that reaches the canvas)
    from napari.utils.key_bindings import KeymapHandler

    saver.ask_path = lambda parent, default: str(tmp_path / "by key")
    handler = KeymapHandler()
    handler.keymap_providers = [labels, viewer]
    assert handler.press_key("Control-S")
    assert saver.last_written == [str(tmp_path / "by key.nii.gz")]

    # another layer: napari's own save dialog, not ours
    seen = []

    def napari_dialog(*args, **kwargs):
        seen.append(args[1])
        return "", ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(napari_dialog))
    viewer.layers.selection.active = image
    saver.ask_path = lambda parent, default: pytest.fail("ours asked for an image layer")
    assert saver.trigger() is None
    assert seen == ["Save selected layers"]


@needs_display
def test_status_bar_help_names_the_plugin_keys(make_napari_viewer, tmp_path) -> None:
    from napari.utils.key_bindings import KeymapHandler

    from napari_paraspinal._napari.viewer_hooks import KEYS_HELP

    viewer = make_napari_viewer()
    _, _, image, labels = _open_with_labels(viewer, tmp_path)
    viewer.layers.selection.active = labels
    assert "1 SP" in viewer.help and "8 ES_R" in viewer.help and "Ctrl+S" in viewer.help
    assert "0 eraser" in viewer.help and KEYS_HELP in labels.help
    assert "use <2> for activate paint mode" not in viewer.help  # napari's digit keys

    handler = KeymapHandler()
    handler.keymap_providers = [labels, viewer]
    handler.press_key("5")
    assert viewer.help.startswith("painting 5 MF_L;") and KEYS_HELP in viewer.help
    labels.mode = "fill"  # napari recomputes its help on a mode change: ours must stay
    assert viewer.help.startswith("label 5 MF_L (fill);") and KEYS_HELP in viewer.help
    handler.press_key("0")
    assert viewer.help.startswith("eraser (0);")
    viewer.update_status_from_cursor()  # what the canvas does on mouse moves
    assert viewer.help.startswith("eraser (0);")

    # other layers keep napari's help
    viewer.layers.selection.active = image
    assert KEYS_HELP not in viewer.help
    plain = viewer.add_labels(np.zeros((8, 8), np.uint8), name="plain")
    viewer.layers.selection.active = plain
    plain.mode = "paint"
    assert KEYS_HELP not in viewer.help and KEYS_HELP not in plain.help
    viewer.layers.selection.active = labels
    assert KEYS_HELP in viewer.help
