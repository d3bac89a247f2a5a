"""CSA on the native grid is exact against the phantom's ground truth at any spacing."""

import numpy as np
import pytest

from napari_paraspinal.core.geometry import Geometry
from napari_paraspinal.core.labels import LABELS, MF_L, MF_R
from napari_paraspinal.measure import asymmetry_pct, csa_columns, csa_mm2


@pytest.mark.parametrize("seed, level", [(0, "L4-L5"), (1, "L5-S1"), (2, "L4-L5")])
def test_csa_matches_phantom_truth(seed: int, level: str, phantom) -> None:
    case = phantom(seed, level=level)
    areas = csa_mm2(case.labels, case.image.geometry)
    for lab in LABELS:
        truth = case.truth["structures"][lab.short]["csa_mm2"]
        assert areas[lab.value] == pytest.approx(truth, rel=1e-9)


def test_area_scales_with_spacing() -> None:
    labels = np.zeros((40, 50), np.uint8)
    labels[10:20, 5:25] = MF_L  # 200 pixels
    for sx, sy in ((0.5, 0.5), (0.9375, 0.9375), (1.2, 0.8)):
        g = Geometry(shape=labels.shape, spacing=(sx, sy, 4.0))
        assert csa_mm2(labels, g)[MF_L] == pytest.approx(200 * sx * sy)
        assert csa_mm2(labels, g)[MF_R] == 0.0


def test_columns_and_asymmetry() -> None:
    labels = np.zeros((10, 10), np.uint8)
    labels[:, :3] = MF_R  # 30 px
    labels[:, 7:] = MF_L  # 30 px
    labels[0, 5] = MF_L  # 31 px
    row = csa_columns(labels, Geometry(shape=(10, 10), spacing=(2.0, 1.0, 1.0)))
    assert row["MF_L_csa_mm2"] == 62.0 and row["MF_R_csa_mm2"] == 60.0
    assert row["MF_asym_pct"] == pytest.approx(100 * 2 / 61, abs=1e-3)
    assert row["PS_asym_pct"] is None
    assert asymmetry_pct(0.0, 10.0) == pytest.approx(-200.0)


def test_labels_off_the_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="not on the image grid"):
        csa_mm2(np.zeros((3, 3), np.uint8), Geometry(shape=(3, 4)))
