"""The phantom generator: deterministic, plausible anatomy, exact ground truth."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.core.labels import BY_SHORT, FAT_LABELS
from napari_paraspinal.phantom import (
    LEVELS,
    PhantomConfig,
    generate_phantom,
    preview_grid,
    write_dataset,
)
from napari_paraspinal.phantom.anatomy import Tissue

# plausible CSA ranges (mm²) per structure for adult lumbar slices, atrophy included
CSA_RANGE = {"SP": (200, 2000), "DI": (800, 2500), "PS_L": (250, 3000), "PS_R": (250, 3000),
             "MF_L": (150, 1600), "MF_R": (150, 1600), "ES_L": (150, 3200),
             "ES_R": (150, 3200)}


@pytest.fixture(scope="module")
def cases():
    return [generate_phantom(s, PhantomConfig(level=LEVELS[s % 2])) for s in range(20)]


def test_deterministic_for_a_seed() -> None:
    a, b = generate_phantom(5), generate_phantom(5)
    np.testing.assert_array_equal(a.image.data, b.image.data)
    np.testing.assert_array_equal(a.labels, b.labels)
    c = generate_phantom(6)
    assert c.image.shape != a.image.shape or not np.array_equal(c.labels, a.labels)


def test_same_patient_in_another_contrast() -> None:
    t2 = generate_phantom(9, PhantomConfig(contrast="T2w"))
    water = generate_phantom(9, PhantomConfig(contrast="dixon_water"))
    np.testing.assert_array_equal(t2.labels, water.labels)
    assert not np.allclose(t2.image.data, water.image.data)


@pytest.mark.parametrize("contrast, fat_brighter", [("T2w", True), ("T1w", True),
                                                    ("dixon_fat", True),
                                                    ("dixon_water", False)])
def test_contrast_fat_versus_muscle(contrast: str, fat_brighter: bool) -> None:
    case = generate_phantom(2, PhantomConfig(contrast=contrast, noise=(0.01, 0.01),
                                             bias_strength=(0.0, 0.0)))
    muscle = case.image.data[(case.labels == BY_SHORT["PS_L"].value)].mean()
    fat = case.image.data[case.fat_fraction > 0.99].mean()
    assert (fat > 1.5 * muscle) if fat_brighter else (muscle > 1.5 * fat)


def test_every_label_present_with_plausible_area(cases) -> None:
    for case in cases:
        for short, (lo, hi) in CSA_RANGE.items():
            csa = case.truth["structures"][short]["csa_mm2"]
            assert lo <= csa <= hi, f"{case.image.source}: {short} {csa:.0f} mm²"


def test_left_structures_at_larger_column(cases) -> None:
    for case in cases:
        cols = {s: np.nonzero(case.labels == BY_SHORT[s].value)[1].mean() for s in CSA_RANGE}
        for muscle in ("PS", "MF", "ES"):
            assert cols[f"{muscle}_L"] > cols[f"{muscle}_R"], case.image.source


def test_truth_matches_the_written_maps(cases) -> None:
    for case in cases[:6]:
        area = case.image.geometry.pixel_area_mm2
        for entry in case.truth["structures"].values():
            mask = case.labels == entry["value"]
            assert entry["csa_mm2"] == pytest.approx(mask.sum() * area)
            if entry["value"] in FAT_LABELS:
                assert entry["fat_fraction"] == pytest.approx(case.fat_fraction[mask].mean(),
                                                              abs=1e-6)
                assert entry["lean_csa_mm2"] + entry["fat_csa_mm2"] == pytest.approx(
                    entry["csa_mm2"])


def test_fat_infiltration_spans_the_range(cases) -> None:
    ff = [c.truth["structures"][s]["fat_fraction"] for c in cases for s in
          ("MF_L", "MF_R", "ES_L", "ES_R")]
    assert min(ff) < 0.1 and max(ff) > 0.3 and max(ff) <= 0.55


def test_geometry_varies_within_ranges(cases) -> None:
    spacings = [c.image.geometry.spacing[k] for c in cases for k in (0, 1)]
    shapes = [n for c in cases for n in c.image.shape]
    assert 0.5 <= min(spacings) and max(spacings) <= 1.2
    assert max(spacings) - min(spacings) > 0.25
    assert 256 <= min(shapes) and max(shapes) <= 512 and len(set(shapes)) > 4
    rotations = [c.truth["parameters"]["rotation_deg"] for c in cases]
    assert max(rotations) - min(rotations) > 10


def test_unlabelled_look_alikes_exist(cases) -> None:
    for case in cases[:6]:
        # muscle-like pixels outside every label: abdominal wall, quadratus lumborum, iliacus
        muscle_like = (case.fat_fraction < 0.01) & (case.labels == 0)
        psoas = case.image.data[case.labels == BY_SHORT["PS_R"].value]
        lo, hi = np.percentile(psoas, [10, 90])
        inside = (case.image.data > lo) & (case.image.data < hi) & muscle_like
        area = inside.sum() * case.image.geometry.pixel_area_mm2
        assert area > 1000, f"{case.image.source}: only {area:.0f} mm² of unlabelled muscle"


def test_l5s1_has_iliac_wings_outside_the_spine_label() -> None:
    from napari_paraspinal.phantom.anatomy import build_parts, draw_body

    rng = np.random.default_rng(0)
    parts = build_parts("L5-S1", draw_body(rng), rng)
    wings = [p for p in parts if p.name.startswith("iliac_wing")]
    assert wings and all(p.label == 0 and p.tissue == Tissue.CORTEX for p in wings[::2])
    assert not any(p.name.startswith("iliac_wing") for p in
                   build_parts("L4-L5", draw_body(rng), rng))


def test_write_dataset_round_trip(tmp_path) -> None:
    paths = write_dataset(tmp_path, n=2, seed=100, level="both")
    assert [p.name for p in paths] == ["phantom_L4L5_s000100.nii.gz",
                                       "phantom_L5S1_s000101.nii.gz"]
    for sub in ("images", "labels", "fat", "truth", "overlays"):
        assert len(list((tmp_path / sub).iterdir())) == 2
    index = json.loads((tmp_path / "dataset.json").read_text())
    assert [c["level"] for c in index["cases"]] == ["L4-L5", "L5-S1"]
    case = generate_phantom(100, PhantomConfig(level="L4-L5"))
    img = sitk.ReadImage(str(paths[0]))
    assert Geometry.from_sitk(img).same_grid(case.image.geometry)
    np.testing.assert_allclose(sitk.GetArrayFromImage(img)[0], case.image.data, rtol=1e-6)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels" / paths[0].name)))[0]
    np.testing.assert_array_equal(lab, case.labels)
    truth = json.loads((tmp_path / "truth" / "phantom_L4L5_s000100.json").read_text())
    assert truth["structures"]["MF_L"]["csa_mm2"] == pytest.approx(
        case.truth["structures"]["MF_L"]["csa_mm2"])


def test_preview_grid(tmp_path, cases) -> None:
    out = preview_grid(cases[:3], tmp_path / "p.png", columns=2, tile=128)
    from PIL import Image

    assert Image.open(out).size == (2 * 2 * 128, 2 * 128)


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="level"):
        PhantomConfig(level="L3-L4")
    with pytest.raises(ValueError, match="contrast"):
        PhantomConfig(contrast="CT")


def test_random_warp_keeps_the_whole_field_of_view() -> None:
    """The warped grid holds every warped input pixel: a constant image keeps its area times
    the warp's determinant, even at the largest scales and shifts (a fixed grid 1.45 times
    the input cut some bodies and made registration misses that were not the
    registration's)."""
    from napari_paraspinal.phantom.warp import random_warp

    spacing = (0.8, 0.9, 4.0)
    image = SliceImage(np.ones((200, 240), np.float32),
                       Geometry(shape=(200, 240), spacing=spacing), source="ones")
    area = 200 * 240 * spacing[0] * spacing[1]
    for seed in range(30):
        warped, warp = random_warp(image, np.random.default_rng(seed), 1e-6,
                                   scale=(1.4, 1.4), shift_mm=30.0)
        kept = (warped.data > 0.5).sum() * spacing[0] * spacing[1]
        assert kept == pytest.approx(area * warp.scale[0] * warp.scale[1], rel=0.01), seed
        data = warped.data
        assert data[0].max() < 0.5 and data[-1].max() < 0.5, seed
        assert data[:, 0].max() < 0.5 and data[:, -1].max() < 0.5, seed
