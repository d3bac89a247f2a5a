"""``paraspinal run --levels`` and the per-level sheet on a synthetic stack with known
levels: the discs of the given label volume are counted up from the sacrum, the table keeps
the mid-disc slice of each wanted level and the levels sheet summarises every level."""

import numpy as np
import openpyxl
import pytest

from napari_paraspinal.bench_levels import write_stack as write_volumes
from napari_paraspinal.cli import main
from napari_paraspinal.levels import assign_levels
from napari_paraspinal.synth.stack import draw_stack


def write_stack(stack, folder, name: str) -> tuple:
    """Image and label volumes of ``stack`` in ``folder``/images and ``folder``/labels."""
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    return write_volumes(stack, folder / "images" / name, folder / "labels" / name)


def sheet(path, title):
    ws = openpyxl.load_workbook(path)[title]
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_levels_keeps_the_mid_disc_slices_and_summarises_each_level(tmp_path, capsys):
    stack = draw_stack(11, reach_sacrum=True, size=320)
    z, truth = write_stack(stack, tmp_path, "spine.nii.gz")
    expected = assign_levels(stack.disc_areas()[np.argsort(stack.z)], z)
    mids = {lv.level: lv.index for lv in expected if lv.mid_disc}
    assert {"L4-L5", "L5-S1"} <= set(mids)
    assert truth[mids["L4-L5"]] == "L4-L5" and truth[mids["L5-S1"]] == "L5-S1"

    common = [str(tmp_path / "images" / "spine.nii.gz"), "--labels",
              str(tmp_path / "labels"), "--no-n4", "--no-overlays", "--quiet"]
    assert main(["run", *common, "--out", str(tmp_path / "all")]) == 0
    assert main(["run", *common, "--levels", "L5-S1,L4-L5", "--out",
                 str(tmp_path / "chosen")]) == 0
    capsys.readouterr()

    every = sheet(tmp_path / "all" / "measurements.xlsx", "measurements")
    assert len(every) == len(z)
    assert [r["level"] for r in every] == [lv.level for lv in expected]
    chosen = sheet(tmp_path / "chosen" / "measurements.xlsx", "measurements")
    assert sorted(r["slice"] for r in chosen) == sorted([mids["L4-L5"], mids["L5-S1"]])
    by_slice = {r["slice"]: r for r in every}
    for r in chosen:  # the same numbers as in the full table
        assert r["level"] in ("L4-L5", "L5-S1") and r["mid_disc"]
        assert r["MF_L_csa_mm2"] == by_slice[r["slice"]]["MF_L_csa_mm2"]
    prov = sheet(tmp_path / "chosen" / "measurements.xlsx", "provenance")
    assert prov[0]["levels_not_found"] in ("", None)

    levels = sheet(tmp_path / "all" / "measurements.xlsx", "levels")
    l4 = next(r for r in levels if r["level"] == "L4-L5")
    members = [r for r in every if r["level"] == "L4-L5"]
    assert l4["n_slices"] == len(members)
    assert l4["MF_L_csa_mm2"] == np.mean([r["MF_L_csa_mm2"] for r in members])
    assert l4["MF_L_csa_mm2_mid"] == by_slice[mids["L4-L5"]]["MF_L_csa_mm2"]
    # superior first
    order = [r["level"] for r in levels]
    assert order.index("L4-L5") < order.index("L5-S1")


def test_levels_on_a_stack_that_does_not_reach_the_sacrum_keeps_none_and_says_so(
        tmp_path, capsys):
    stack = draw_stack(12, reach_sacrum=False, size=320)
    write_stack(stack, tmp_path, "high.nii.gz")
    assert main(["run", str(tmp_path / "images" / "high.nii.gz"), "--labels",
                 str(tmp_path / "labels"), "--no-n4", "--no-overlays", "--quiet",
                 "--levels", "L4-L5", "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    book = openpyxl.load_workbook(tmp_path / "out" / "measurements.xlsx")
    assert book["measurements"].max_row == 1  # the header only
    assert "levels" not in book.sheetnames
    prov = sheet(tmp_path / "out" / "measurements.xlsx", "provenance")
    assert prov[0]["levels_not_found"] == "L4-L5"


def test_levels_option_refuses_a_vertebral_body(capsys):
    with pytest.raises(SystemExit):
        main(["run", "x.nii.gz", "--out", "o", "--levels", "L4"])
    assert "give the disc" in capsys.readouterr().err


def test_level_anchor_counts_a_stack_that_does_not_reach_the_sacrum(tmp_path, capsys):
    stack = draw_stack(12, reach_sacrum=False, size=320)
    z, truth = write_stack(stack, tmp_path, "high.nii.gz")
    k = truth.index("L3-L4")  # the user knows this slice is the L3-L4 disc
    common = [str(tmp_path / "images" / "high.nii.gz"), "--labels", str(tmp_path / "labels"),
              "--no-n4", "--no-overlays", "--quiet"]
    assert main(["run", *common, "--level-anchor", f"{k}=l3/l4", "--levels", "L4-L5",
                 "--out", str(tmp_path / "out")]) == 0
    assert main(["run", *common, "--level-anchor", f"{k}=L3-L4", "--out",
                 str(tmp_path / "all")]) == 0
    capsys.readouterr()
    every = sheet(tmp_path / "all" / "measurements.xlsx", "measurements")
    named = [r["level"] for r in sorted(every, key=lambda r: r["slice"])]
    assert named[k] == "L3-L4"
    right = np.mean([a == b for a, b in zip(named, truth, strict=True)])
    assert right >= 0.9, list(zip(named, truth, strict=True))
    assert "unknown" not in named[k - 3:k + 4]
    chosen = sheet(tmp_path / "out" / "measurements.xlsx", "measurements")
    assert [r["level"] for r in chosen] == ["L4-L5"] and truth[chosen[0]["slice"]] == "L4-L5"


def test_level_anchor_that_cannot_hold_leaves_levels_unknown_and_says_why(tmp_path, capsys):
    stack = draw_stack(12, reach_sacrum=False, size=320)
    _, truth = write_stack(stack, tmp_path, "high.nii.gz")
    body = truth.index("L3") + 2  # mid vertebral body, far from any disc
    assert main(["run", str(tmp_path / "images" / "high.nii.gz"), "--labels",
                 str(tmp_path / "labels"), "--no-n4", "--no-overlays", "--quiet",
                 "--level-anchor", f"high:{body}=L4-L5", "--level-anchor", "other:3=L2",
                 "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "--level-anchor names case 'other'" in err
    rows = sheet(tmp_path / "out" / "measurements.xlsx", "measurements")
    assert {r["level"] for r in rows} == {"unknown"}
    assert all(f"anchor slice {body} is named L4-L5" in r["level_note"] for r in rows)


@pytest.mark.parametrize("bad", ["14", "x=L4-L5", "14=L9", "14:L4-L5"])
def test_level_anchor_option_refuses_what_it_cannot_read(bad, capsys):
    with pytest.raises(SystemExit):
        main(["run", "x.nii.gz", "--out", "o", "--level-anchor", bad])
    assert "give SLICE=LEVEL" in capsys.readouterr().err
