"""Per-slice lumbar levels: counting discs up from the sacrum, anchors, refusals, the summary
sheet, synthetic stacks with known levels and the real stacks (which do not reach the
sacrum)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_paraspinal.level_args import LevelAnchor, parse_anchor, parse_levels
from napari_paraspinal.levels import (
    LEVEL_ORDER,
    UNKNOWN,
    LevelConfig,
    assign_levels,
    level_summary,
    mid_disc_slices,
    superior_positions,
)
from napari_paraspinal.realdata import default_real_data_dir

# discs (centre, thickness) in mm from the top of the sacrum: L5-S1 ... L1-L2
DISCS = ((6.0, 12.0), (46.0, 11.0), (84.0, 9.0), (120.0, 9.0), (156.0, 9.0))


def profile(bottom: float, top: float, spacing: float = 4.0, skip: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Positions and DI areas of a toy stack; ``skip`` leaves out one disc (a missed disc)."""
    z = np.arange(bottom, top + 1e-6, spacing)
    areas = np.zeros_like(z)
    for k, (c, t) in enumerate(DISCS):
        if k != skip:
            areas[np.abs(z - c) < t / 2] = 1200.0
    return z, areas


def names(levels) -> list[str]:
    return [s.level for s in levels]


def test_counts_up_from_the_sacrum():
    z, a = profile(-60, 170)
    levels = assign_levels(a, z)
    by_z = {round(float(p)): s for p, s in zip(z, levels, strict=True)}
    assert by_z[4].level == "L5-S1" and by_z[4].disc
    assert by_z[-20].level == "S1" and by_z[-40].level == "sacrum"
    assert by_z[24].level == "L5" and by_z[44].level == "L4-L5" and by_z[64].level == "L4"
    assert by_z[156].level == "L1-L2" and by_z[168].level == "L1"
    assert UNKNOWN not in names(levels)
    mids = [round(float(z[s.index])) for s in levels if s.mid_disc]
    assert mids == [4, 44, 84, 120, 156]  # nearest the centre of each run
    assert [s.index for s in levels] == list(range(len(z)))


def test_top_down_storage_gives_the_same_levels():
    z, a = profile(-60, 170)
    up = assign_levels(a, z)
    down = assign_levels(a[::-1], z[::-1])
    assert names(down) == names(up)[::-1]
    assert mid_disc_slices(down) == sorted(len(z) - 1 - k for k in mid_disc_slices(up))


def test_a_stack_without_the_sacrum_is_unknown():
    z, a = profile(30, 170)  # starts in L5
    levels = assign_levels(a, z)
    assert set(names(levels)) == {UNKNOWN}
    assert "below the lowest disc" in levels[0].reason
    assert [round(float(z[s.index])) for s in levels if s.mid_disc][0] == 46
    z, a = profile(2, 170)  # starts inside L5-S1: the disc is cut
    assert "cut by the end" in assign_levels(a, z)[0].reason
    z = np.arange(20.0, 40.0, 4.0)
    assert "no intervertebral disc" in assign_levels(np.zeros_like(z), z)[0].reason


def test_a_faint_disc_below_the_lowest_counted_one_places_no_sacrum():
    # the model labels L5-S1 only faintly (below the disc threshold): counting from L4-L5
    # as if it were L5-S1 would name every slice one level too low
    z, a = profile(-60, 170)
    low = np.abs(z - DISCS[0][0]) < DISCS[0][1] / 2
    a[low] = 50.0
    levels = assign_levels(a, z)
    assert set(names(levels)) == {UNKNOWN}
    assert "faint disc labels (50 mm²)" in levels[0].reason
    # the lowest disc's own tilted edge fading out below it is no reason for doubt ...
    z, a = profile(-60, 170)
    for height, area in ((0.0, 400.0), (-4.0, 60.0), (-8.0, 30.0)):
        a[np.argmin(np.abs(z - height))] = area
    assert names(assign_levels(a, z))[:3] == ["sacrum"] * 3
    # ... nor a fragment of that edge the model left a slice out of
    z, a = profile(-60, 170)
    a[np.argmin(np.abs(z + 8))] = 50.0  # 12 mm below the disc's lowest slice, 0 between
    assert names(assign_levels(a, z))[:3] == ["sacrum"] * 3
    # ... nor a faint label farther below than a disc can be
    z, a = profile(-60, 170)
    a[np.argmin(np.abs(z + 56))] = 50.0
    assert UNKNOWN not in names(assign_levels(a, z))


def test_too_little_below_the_lowest_disc_unless_the_sacrum_is_seen():
    z, a = profile(-20, 100)
    assert set(names(assign_levels(a, z))) == {UNKNOWN}
    sacrum = z < -4
    levels = assign_levels(a, z, sacrum=sacrum)
    assert levels[int(np.argmin(np.abs(z - 4)))].level == "L5-S1"
    wrong = z > 60  # "sacrum" above the lowest disc contradicts it
    assert "contradicts" in assign_levels(a, z, sacrum=wrong)[0].reason


def test_a_missed_disc_stops_the_count():
    z, a = profile(-60, 170, skip=2)  # L3-L4 not found
    levels = {round(float(p)): s for p, s in zip(z, assign_levels(a, z), strict=True)}
    assert levels[44].level == "L4-L5" and levels[60].level == "L4"
    assert levels[84].level == UNKNOWN  # inside the missed disc: not named L4
    assert levels[120].level == UNKNOWN and "missed" in levels[120].reason


def test_disc_labels_on_every_slice_are_not_counted():
    z = np.arange(0.0, 116.0, 4.0)  # what the shipped model gives on the real Dixon water
    levels = assign_levels(np.full(z.size, 1400.0), z)
    assert set(names(levels)) == {UNKNOWN} and "cannot be counted" in levels[0].reason
    levels = assign_levels(np.full(z.size, 1400.0), z, anchor=(3, "L4"))
    assert names(levels)[3] == "L4" and names(levels).count(UNKNOWN) == z.size - 1


def test_anchor_fixes_the_numbering():
    z, a = profile(30, 170)
    k = int(np.argmin(np.abs(z - 46)))
    levels = assign_levels(a, z, anchor=(k, "L4-L5"))
    by_z = {round(float(p)): s.level for p, s in zip(z, levels, strict=True)}
    assert by_z[46] == "L4-L5" and by_z[30] == "L5" and by_z[86] == "L3-L4"
    body = int(np.argmin(np.abs(z - 66)))
    assert names(assign_levels(a, z, anchor=(body, "L4"))) == names(levels)
    with pytest.raises(ValueError, match="no disc was found"):
        assign_levels(a, z, anchor=(body, "L4-L5"))
    with pytest.raises(ValueError, match="lies in a disc"):
        assign_levels(a, z, anchor=(k, "L4"))
    with pytest.raises(ValueError, match="unknown level"):
        assign_levels(a, z, anchor=(k, "L9"))
    with pytest.raises(ValueError, match="outside the stack"):
        assign_levels(a, z, anchor=(999, "L4-L5"))
    z, a = profile(-60, 170)
    with pytest.warns(UserWarning, match="disagrees"):
        levels = assign_levels(a, z, anchor=(k + 23, "L3-L4"))  # off by one: anchor wins


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="positions"):
        assign_levels([1.0, 2.0], [0.0])
    with pytest.raises(ValueError, match="share a position"):
        assign_levels([1.0, 2.0], [4.0, 4.0])


def test_parse_anchor():
    assert parse_anchor("14=L4-L5") == LevelAnchor(14, "L4-L5")
    assert parse_anchor("case1: 20 = l4") == LevelAnchor(20, "L4", "case1")
    assert parse_anchor("a:b:3=l4/l5") == LevelAnchor(3, "L4-L5", "a:b")
    assert parse_anchor("0=SACRUM") == LevelAnchor(0, "sacrum")
    for bad in ("14", "=L4", "-1=L4", "14=L6-S1", "14:L4"):
        with pytest.raises(ValueError, match="SLICE=LEVEL"):
            parse_anchor(bad)


def test_parse_levels():
    assert parse_levels("L4-L5,L5-S1") == ["L4-L5", "L5-S1"]
    assert parse_levels(" l4-l5 , L4/L5 ") == ["L4-L5"]
    with pytest.raises(ValueError, match="vertebral body"):
        parse_levels("L4")
    with pytest.raises(ValueError, match="unknown disc level 'L6-S1'"):
        parse_levels("L6-S1")
    with pytest.raises(ValueError, match="empty level"):
        parse_levels("L4-L5,")


def test_level_summary():
    rows = [
        {"level": "L4-L5", "mid_disc": False, "ES_L": 10.0, "MF_L": 1.0},
        {"level": "L4-L5", "mid_disc": True, "ES_L": 20.0, "MF_L": float("nan")},
        {"level": "L5", "mid_disc": False, "ES_L": 30.0, "MF_L": None},
        {"level": "L5-S1", "mid_disc": True, "ES_L": 40.0, "MF_L": 4.0},
        {"level": UNKNOWN, "mid_disc": False, "ES_L": 50.0, "MF_L": 5.0},
    ]
    out = level_summary(rows, ["ES_L", "MF_L"])
    assert [r["level"] for r in out] == ["L4-L5", "L5", "L5-S1"]
    assert out[0] == {"level": "L4-L5", "n_slices": 2, "ES_L": 15.0, "ES_L_mid": 20.0,
                      "MF_L": 1.0, "MF_L_mid": None}
    assert out[1]["ES_L_mid"] is None and out[1]["MF_L"] is None
    assert level_summary(rows, ["ES_L"], include_unknown=True)[-1]["level"] == UNKNOWN


@pytest.mark.parametrize("seed", [11, 12])
def test_synthetic_stacks_on_true_disc_areas(seed):
    from napari_paraspinal.synth.stack import draw_stack

    stack = draw_stack(seed, reach_sacrum=True, size=320)
    levels = assign_levels(stack.disc_areas(), stack.z)
    got = names(levels)
    right = sum(g == t or (t == "S1" and g == "sacrum") for g, t in zip(got, stack.levels,
                                                                          strict=True))
    assert right >= 0.95 * len(got)
    # a wrong name is at most a disc-edge slice (the neighbouring level): the count is right
    rank = {n: i for i, n in enumerate(LEVEL_ORDER)}
    for g, t in zip(got, stack.levels, strict=True):
        assert g == UNKNOWN or abs(rank[g] - rank[t]) <= 1
    high = draw_stack(seed, reach_sacrum=False, size=320)
    assert set(names(assign_levels(high.disc_areas(), high.z))) == {UNKNOWN}


DATA = default_real_data_dir()
LPM = DATA / "lpm_tum01"
needs_data = pytest.mark.skipif(not (LPM / "water.nii.gz").is_file(),
                                reason=f"real stacks not found in {DATA} (shared/data beside "
                                       "the repository, or $PARASPINAL_REAL_DATA)")


@needs_data
def test_real_stack_positions_run_superior():
    for path, n, step in ((LPM / "water.nii.gz", 29, 4.0), (LPM / "fat.nii.gz", 29, 4.0),
                          (DATA / "musclemap_sub0001" / "image.nii.gz", 20, 4.4)):
        z = np.asarray(superior_positions(path))
        assert z.size == n and np.allclose(np.diff(z), step, atol=0.05)  # k=0 is inferior


@needs_data
def test_real_l2_l5_stack_is_unknown_with_the_model():
    """The shipped model's DI area on three slices 8 mm apart, and the whole L2-L5 slab."""
    from napari_paraspinal.core.io import read_slice
    from napari_paraspinal.core.labels import DI
    from napari_paraspinal.segment import load_model, segment_slice

    path = LPM / "water.nii.gz"
    z = superior_positions(path)
    model = load_model(device="cpu")
    areas = np.full(len(z), np.nan)
    for k in (4, 6, 8):
        image = read_slice(path, index=k)
        seg = segment_slice(image, model)
        areas[k] = (seg.labels == DI).sum() * image.geometry.pixel_area_mm2
    assert np.all(np.isfinite(areas[[4, 6, 8]]))
    levels = assign_levels(areas, z, config=LevelConfig())
    assert {s.level for s in levels} == {UNKNOWN}


def test_select_levels_keeps_the_mid_disc_slice_of_each_wanted_level() -> None:
    from napari_paraspinal.levels import select_levels

    stack = [{"case": "a", "slice": k, "level": lv, "mid_disc": mid, "status": "segmented"}
             for k, (lv, mid) in enumerate([("L5-S1", False), ("L5-S1", True), ("L5", False),
                                            ("L4-L5", True), ("L4", False), ("L3-L4", True)])]
    unknown = [{"case": "b", "slice": k, "level": "unknown", "mid_disc": False,
                "status": "segmented"} for k in range(3)]
    failed = [{"case": "b", "slice": 3, "level": "unknown", "status": "failed"}]
    single = [{"case": "c", "level": "L4-L5", "status": "segmented"},
              {"case": "d", "level": "L3-L4", "status": "segmented"}]
    kept, missing = select_levels(stack + unknown + failed + single, ["L4-L5", "L5-S1"])
    assert [(r["case"], r.get("slice")) for r in kept] == [("a", 1), ("a", 3), ("b", 3),
                                                          ("c", None)]
    assert missing == {"b": ["L4-L5", "L5-S1"], "c": ["L5-S1"], "d": ["L4-L5", "L5-S1"]}
