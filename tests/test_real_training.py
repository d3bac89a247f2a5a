"""Real labelled slices in synthetic training: on the frame, mirrored with their sides,
scored only on what they annotate, and named in the card so no benchmark calls them unseen."""

import numpy as np
import pytest
import torch
from napari_paraspinal.models import MODELS_DIR

from napari_paraspinal.bench_real import bench_real
from napari_paraspinal.core.labels import (
    ES_L,
    ES_R,
    MF_L,
    MF_R,
    NUM_CLASSES,
    PS_L,
    PS_R,
    label_mask,
)
from napari_paraspinal.jobs import Progress
from napari_paraspinal.nets.bundle import load_bundle
from napari_paraspinal.nets.losses import DiceCELoss
from napari_paraspinal.nets.samples import AtlasSamples
from napari_paraspinal.nets.synth_train import SynthTrainConfig, fit_synthetic_bundle, real_batch
from napari_paraspinal.preprocess.atlas import load_atlases
from napari_paraspinal.preprocess.chain import BODY, PreprocessConfig
from napari_paraspinal.real_training import frame_samples, pick_series
from napari_paraspinal.realdata import default_real_data_dir, real_series
from napari_paraspinal.segment import default_model_path

DATA = default_real_data_dir()
needs_data = pytest.mark.skipif(
    len(real_series(DATA)) < 4,
    reason=f"real cases not found in {DATA} (shared/data beside the repository, or "
           "$PARASPINAL_REAL_DATA)",
)


def test_a_series_annotating_some_structures_leaves_background_open() -> None:
    mask = label_mask((MF_L, MF_R, ES_L, ES_R))
    assert mask.tolist() == [False, False, False, False, False, True, True, True, True]
    assert label_mask(range(1, NUM_CLASSES))[0]


def test_mirroring_a_real_slice_moves_its_labels_and_annotations_together() -> None:
    labels = np.zeros((1, 128, 128), np.uint8)
    labels[0, 55:72, 85:100] = PS_L  # patient's left is the frame's +x (larger column)
    mask = label_mask((PS_L,))[None]
    image = np.zeros((1, 128, 128), np.float32)
    samples = AtlasSamples(image, labels, mask, ["a"])
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(12):
        _, y, m = real_batch(samples, np.array([0]), 128, rng)
        values = set(np.unique(y[0].numpy())) - {0}
        assert values <= {PS_L, PS_R}
        (value,) = values
        # what is labelled is what the mask says is annotated
        assert m[0, value] and m[0].sum() == 1
        cols = np.nonzero(y[0].numpy() == value)[1]
        assert (cols.mean() > 64) == (value == PS_L)  # the left one stays on the left
        seen.add(value)
    assert seen == {PS_L, PS_R}


@needs_data
def test_real_slices_reach_the_frame_with_their_labels_on_the_muscles() -> None:
    series = pick_series(["musclemap_sub0001"], DATA)
    events: list[Progress] = []
    samples = frame_samples(series, PreprocessConfig(frame=BODY),
                            load_atlases(MODELS_DIR / "atlases"), progress=events.append)
    assert len(samples) == 20 and samples.images.shape[1:] == (256, 256)
    assert [(e.stage, e.done, e.total, e.case) for e in events] == [
        ("frame", n + 1, len(series), s.name) for n, s in enumerate(series)]
    assert samples.label_mask[0].tolist() == label_mask(
        (PS_L, PS_R, MF_L, MF_R, ES_L, ES_R)).tolist()
    k = 10
    image, labels = samples.images[k], samples.labels[k]
    # the muscles of a fat image are dark: labelled pixels darker than the body around
    body = image > 0.05
    assert image[labels > 0].mean() < 0.6 * image[body & (labels == 0)].mean()
    # the frame puts the patient's left at larger x
    cols_l = np.nonzero(labels == ES_L)[1].mean()
    cols_r = np.nonzero(labels == ES_R)[1].mean()
    assert cols_l > cols_r
    # the loss accepts them as partially labelled samples
    logits = torch.zeros((2, NUM_CLASSES, 256, 256))
    loss = DiceCELoss()(logits, torch.from_numpy(samples.labels[:2]).long(),
                        torch.from_numpy(samples.label_mask[:2]))
    assert torch.isfinite(loss)


@needs_data
def test_unknown_real_cases_are_named() -> None:
    with pytest.raises(ValueError, match="no labelled real series 'nobody'.*lpm_tum01"):
        pick_series(["nobody"], DATA)


@needs_data
def test_a_model_trained_on_a_real_case_says_so_and_is_not_called_zero_shot(tmp_path) -> None:
    config = SynthTrainConfig(steps=2, batch_size=4, crop=64, pool=4, val=2, workers=1,
                              checkpoint_every=1, val_every=1, device="cpu", real_share=0.5)
    out = fit_synthetic_bundle(tmp_path / "m", "m", config, width=4,
                               real=["musclemap_sub0001"], real_root=DATA)
    _, card = load_bundle(out)
    assert card.data["real_images_used"] == {"musclemap_sub0001/fat": 20}
    rows = bench_real(str(out), DATA, slices="every10", device="cpu")
    seen = {r["case"]: r["seen_in_training"] for r in rows}
    assert seen == {"lpm_tum01": False, "musclemap_sub0001": True}
    # leave one case out: the case it saw is scored by a model that did not see it
    shipped = default_model_path()  # trained on both: never the one that scores them
    synth_only = MODELS_DIR / "paraspinal-synth"
    rows = bench_real(str(out), DATA, slices="every10", device="cpu",
                      unseen=[str(shipped), str(synth_only)],
                      series=pick_series(["musclemap_sub0001", "lpm_tum01/water"], DATA))
    scored = {r["case"]: (r["model"], r["seen_in_training"]) for r in rows}
    assert scored == {"musclemap_sub0001": ("paraspinal-synth", False),
                      "lpm_tum01": ("m", False)}


def test_a_real_share_without_real_cases_is_refused(tmp_path) -> None:
    config = SynthTrainConfig(steps=1, batch_size=2, crop=64, pool=2, val=2, workers=1,
                              device="cpu", real_share=0.5)
    with pytest.raises(ValueError, match="real_share needs real cases"):
        fit_synthetic_bundle(tmp_path / "m", "m", config, width=4)


def test_a_random_intensity_curve_keeps_air_dark_and_reorders_tissues() -> None:
    from napari_paraspinal.nets.augment import AugmentConfig, augment_slice, remap_intensity

    ramp = np.linspace(0, 1, 256, dtype=np.float32)[None].repeat(8, 0)
    rng = np.random.default_rng(1)
    curves = [remap_intensity(ramp, rng)[0] for _ in range(40)]
    for c in curves:
        assert c[0] == 0 and 0 <= c.min() and c.max() <= 1 + 1e-6
    # some curves turn the order of intensities around (fat bright -> fat dark)
    assert any(c[-1] < c[40] for c in curves) and any(c[-1] > c[40] for c in curves)
    labels = np.zeros((64, 64), np.uint8)
    labels[20:40, 20:40] = MF_L
    image = np.where(labels > 0, 0.1, 0.8).astype(np.float32)
    plain = AugmentConfig(rotation_deg=0, scale=(1, 1), shift_px=0, gamma_sd=0, bias=0,
                          blur_px=0, noise=0)
    same, lab = augment_slice(image, labels, np.random.default_rng(2), plain)
    assert np.array_equal(same, image) and np.array_equal(lab, labels)
    from dataclasses import replace
    moved = [augment_slice(image, labels, np.random.default_rng(s), replace(plain, remap=1.0))
             for s in range(20)]
    assert all(np.array_equal(m[1], labels) for m in moved)  # labels never change
    # the muscle ends up brighter than the fat around it in some draws
    assert any(m[0][30, 30] > m[0][5, 5] for m in moved)
