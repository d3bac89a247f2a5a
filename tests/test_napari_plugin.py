"""The napari plugin: manifest, reader, sample data and writer, in a real viewer under Xvfb."""

import os

import numpy as np
import pytest

from napari_paraspinal.core.io import read_labels, read_slice
from napari_paraspinal.core.labels import PS_L, PS_R
from napari_paraspinal.core.writers import write_image, write_labels
from napari_paraspinal.phantom import PhantomConfig, generate_phantom

pytestmark = pytest.mark.gui
needs_display = pytest.mark.skipif(
    not os.environ.get("DISPLAY"), reason="napari's canvas needs a display: run under xvfb-run"
)


def test_manifest_is_valid_and_discovered() -> None:
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-paraspinal")
    assert {c.id for c in manifest.contributions.commands} >= {
        "napari-paraspinal.get_reader", "napari-paraspinal.write_labels",
    }
    assert {s.key for s in manifest.contributions.sample_data} == {"phantom_l4l5",
                                                                  "phantom_l5s1"}


def test_reader_declines_what_it_cannot_read(tmp_path) -> None:
    from napari_paraspinal._napari.reader import get_reader

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert get_reader(str(text)) is None
    assert get_reader(str(tmp_path / "missing.nii.gz")) is None


@needs_display
def test_open_paint_and_save_on_the_native_grid(make_napari_viewer, tmp_path) -> None:
    # a phantom stored flipped left-right: the viewer must still show patient right on the
    # viewer's left, and the saved labels must land on the file's own grid
    case = generate_phantom(3, PhantomConfig(level="L4-L5"))
    g = case.image.geometry
    flipped_dir = tuple(np.diag([-1.0, 1.0, -1.0]).ravel())
    origin = g.index_to_world(g.shape[1] - 1, 0)
    from napari_paraspinal.core.geometry import Geometry

    native = Geometry(shape=g.shape, spacing=g.spacing, origin=tuple(origin),
                      direction=flipped_dir)
    image_path = tmp_path / "flipped.nii.gz"
    write_image(case.image.with_data(case.image.data[:, ::-1].copy(), geometry=native),
                image_path)
    native_labels = case.labels[:, ::-1].copy()
    write_labels(native_labels, native, tmp_path / "truth.nii.gz")

    viewer = make_napari_viewer()
    layers = viewer.open(str(image_path), plugin="napari-paraspinal")
    assert len(layers) == 1
    layer = layers[0]
    np.testing.assert_allclose(layer.scale, [g.spacing[1], g.spacing[0]])
    # canonical view: the displayed array equals the phantom's canonical pixels
    np.testing.assert_allclose(layer.data, case.image.data, rtol=1e-6)

    from napari_paraspinal._napari.layers import labels_layer

    data, kwargs, _ = labels_layer(native_labels, {"scale": layer.scale,
                                                   "translate": layer.translate,
                                                   "metadata": layer.metadata})
    labels = viewer.add_labels(data, **kwargs)
    cols = np.nonzero(labels.data == PS_L)[1].mean(), np.nonzero(labels.data == PS_R)[1].mean()
    assert cols[0] > cols[1], "left psoas must be on the viewer's right"
    labels.data[0, 0] = PS_L  # an edit
    out = tmp_path / "edited.nii.gz"
    labels.save(str(out), plugin="napari-paraspinal")
    saved = read_labels(out, read_slice(image_path).geometry)
    expected = native_labels.copy()
    expected[0, -1] = PS_L  # canonical (0, 0) is native (0, last column)
    np.testing.assert_array_equal(saved, expected)


@needs_display
def test_sample_data_opens(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    viewer.open_sample("napari-paraspinal", "phantom_l5s1")
    kinds = sorted(type(layer).__name__ for layer in viewer.layers)
    assert kinds == ["Image", "Labels", "Points"]  # Points: the orientation letters
    assert viewer.layers[-1].name == "orientation"
    assert set(np.unique(viewer.layers[1].data)) == set(range(9))
