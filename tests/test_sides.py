"""Left and right from the spine's midline (napari_paraspinal.sides): a muscle label can only
lie on its own side of the patient, on drawn probabilities and on the real Dixon case whose
fat and water images the network alone labels with left and right swapped."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from napari_paraspinal.models import MODELS_DIR

from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, SP
from napari_paraspinal.seg_qc import swapped_pairs
from napari_paraspinal.sides import assign_sides, midline

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LPM = DATA / "lpm_tum01"


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    return np.hypot(rows - centre[0], cols - centre[1]) <= radius


def probabilities(pieces: dict[int, list[np.ndarray]], shape=(256, 256)) -> np.ndarray:
    """One-hot C×H×W probabilities (9 classes) painted from masks."""
    probs = np.zeros((9, *shape), np.float32)
    probs[0] = 1.0
    for value, masks in pieces.items():
        for mask in masks:
            probs[:, mask] = 0.0
            probs[value, mask] = 1.0
    return probs


def test_stray_piece_on_the_wrong_side_takes_its_sides_label() -> None:
    shape = (256, 256)
    sp = disc(shape, (200, 140), 6)  # spine 12 px to the patient's left of the centre
    mf_left, mf_right = disc(shape, (210, 160), 9), disc(shape, (210, 120), 9)
    stray = disc(shape, (180, 100), 5)  # labelled ES_L, on the patient's right
    probs = probabilities({SP: [sp], MF_L: [mf_left], MF_R: [mf_right], ES_L: [stray]})
    point, direction = midline(probs)
    assert point[1] == pytest.approx(140, abs=0.5)
    assert tuple(direction) == (1.0, 0.0)
    labels = assign_sides(probs).argmax(0)
    assert (labels[stray] == ES_R).all()
    assert (labels[mf_left] == MF_L).all() and (labels[mf_right] == MF_R).all()
    # the probability of each pair is kept, only moved between its two labels
    fixed = assign_sides(probs)
    np.testing.assert_allclose(fixed[ES_L] + fixed[ES_R], probs[ES_L] + probs[ES_R])


def test_a_piece_across_the_midline_is_split_there() -> None:
    shape = (256, 256)
    sp = disc(shape, (200, 128), 5)
    both = disc(shape, (215, 128), 15)  # the two multifidi merged, all labelled MF_R
    labels = assign_sides(probabilities({SP: [sp], MF_R: [both]})).argmax(0)
    rows, cols = np.nonzero(both & ~sp)
    on_left = cols > 128.5
    assert (labels[rows[on_left], cols[on_left]] == MF_L).all()
    assert (labels[rows[cols < 127.5], cols[cols < 127.5]] == MF_R).all()


def test_a_spine_label_far_from_the_centre_does_not_move_the_midline() -> None:
    shape = (256, 256)
    bowel = disc(shape, (60, 60), 12)  # posterior-elements label put in the bowel
    mf_left, mf_right = disc(shape, (210, 145), 9), disc(shape, (210, 111), 9)
    probs = probabilities({SP: [bowel], MF_L: [mf_left], MF_R: [mf_right]})
    point, _ = midline(probs)
    assert point[1] == pytest.approx(128, abs=1.0)  # from the multifidi, not the bowel


@pytest.mark.skipif(not (LPM / "fat.nii.gz").exists(),
                    reason=f"real Dixon case not found in {LPM} (shared/data beside the "
                           "repository)")
def test_no_left_right_swap_on_the_real_dixon_slices_the_network_swaps() -> None:
    from napari_paraspinal.realdata import read_series_slice, real_series
    from napari_paraspinal.segment import load_model, segment_many

    series = {s.name: s for s in real_series(DATA)}["lpm_tum01/fat"]
    slices = (14, 22, 28)  # slices the network alone labels with a side swapped
    images = [read_series_slice(series, k)[0] for k in slices]
    # the synthetic-only model: the shipped one, trained on these slices, swaps none of them
    model = load_model(MODELS_DIR / "paraspinal-synth", device="cpu")
    assert model.sides == "midline"
    by_network = [swapped_pairs(seg.labels, images[i].geometry)
                  for i, seg in segment_many(images, replace(model, sides="network"))]
    by_midline = [swapped_pairs(seg.labels, images[i].geometry)
                  for i, seg in segment_many(images, model)]
    assert any(by_network), "the network alone no longer swaps these slices: pick others"
    assert not any(by_midline)


def test_mirror_channels_exchange_left_and_right_only() -> None:
    from napari_paraspinal.sides import mirror_channels

    order = mirror_channels(9)
    assert order == [0, 1, 2, 4, 3, 6, 5, 8, 7]
    assert mirror_channels(3) == [0, 1, 2]  # a model without the muscles


def test_mirrored_averaging_makes_the_network_mirror_symmetric() -> None:
    """With ``mirror`` the network's answer on a mirrored slice is the mirror of its answer
    on the slice, left and right exchanged; without it, it is not."""
    from napari_paraspinal.segment import _predict, load_model
    from napari_paraspinal.sides import mirror_channels

    rng = np.random.default_rng(3)
    image = rng.normal(size=(1, 256, 256)).astype(np.float32)
    image[0, 100:200, 60:120] += 2.0  # something not symmetric
    flipped = image[:, :, ::-1].copy()
    swap = mirror_channels(9)
    model = load_model(device="cpu")
    assert model.mirror
    a, b = _predict(model, image, 1), _predict(model, flipped, 1)
    np.testing.assert_allclose(b, a[:, swap, :, ::-1], atol=1e-5)
    plain = replace(model, mirror=False)
    a, b = _predict(plain, image, 1), _predict(plain, flipped, 1)
    assert np.abs(b - a[:, swap, :, ::-1]).max() > 1e-3


def test_bfloat16_network_agrees_with_float32_and_is_recorded(tmp_path) -> None:
    """The faster arithmetic changes probabilities a little, labels hardly; provenance says
    which ran."""
    import openpyxl

    from napari_paraspinal.cli import main
    from napari_paraspinal.core.writers import write_image
    from napari_paraspinal.phantom.generator import generate_phantom
    from napari_paraspinal.segment import _predict, load_model

    rng = np.random.default_rng(5)
    image = rng.normal(size=(2, 256, 256)).astype(np.float32)
    model = load_model(device="cpu")
    a = _predict(model, image, 2)
    b = _predict(replace(model, precision="bfloat16"), image, 2)
    assert not np.array_equal(a, b)  # it did run in another arithmetic
    assert (a.argmax(1) == b.argmax(1)).mean() > 0.97
    with pytest.raises(ValueError, match="precision"):
        load_model(device="cpu", precision="float16")

    phantom = generate_phantom(seed=880001)
    write_image(phantom.image, tmp_path / "p.nii.gz")
    assert main(["run", str(tmp_path / "p.nii.gz"), "--out", str(tmp_path / "o"),
                 "--precision", "bfloat16", "--no-overlays", "--quiet"]) == 0
    prov = openpyxl.load_workbook(tmp_path / "o" / "measurements.xlsx")["provenance"]
    header = [c.value for c in prov[1]]
    inference = prov.cell(2, header.index("inference") + 1).value
    assert '"precision": "bfloat16"' in inference and '"mirror": true' in inference
