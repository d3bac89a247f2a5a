"""The label table is the one in DEVELOPERS.md, and left/right swapping is an involution."""

import numpy as np

from napari_paraspinal.core import labels as L


def test_table_matches_the_specification() -> None:
    expected = ["SP", "DI", "PS_L", "PS_R", "MF_L", "MF_R", "ES_L", "ES_R"]
    assert [lab.short for lab in L.LABELS] == expected
    assert [lab.value for lab in L.LABELS] == list(range(1, 9))
    assert L.NUM_CLASSES == 9
    assert len({lab.color for lab in L.LABELS}) == 8
    for lab in L.LABELS:
        if lab.short.endswith("_L"):
            assert lab.side == "L" and "left" in lab.name
        elif lab.short.endswith("_R"):
            assert lab.side == "R" and "right" in lab.name


def test_swap_left_right() -> None:
    arr = np.arange(9, dtype=np.uint8).reshape(3, 3)
    swapped = L.swap_left_right(arr)
    assert swapped[L.PS_L // 3, L.PS_L % 3] == L.PS_R
    assert swapped[L.ES_R // 3, L.ES_R % 3] == L.ES_L
    assert swapped[0, 1] == L.SP and swapped[0, 2] == L.DI
    np.testing.assert_array_equal(L.swap_left_right(swapped), arr)


def test_napari_colours() -> None:
    colors = L.label_colors()
    assert colors[0][3] == 0.0 and colors[None][3] == 0.0
    assert all(colors[v][3] == 1.0 for v in range(1, 9))
