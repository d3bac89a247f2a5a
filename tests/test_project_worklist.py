"""The annotators' worklist and effort, headless: uncertainty scores, ``next_case`` and
``paraspinal project next``, edit effort and time open in the export, and a schema-2 project
opened by this version.

Cases are phantom slices written as NIfTI; "predicted" versions are the phantoms' true labels
saved as automatic, so a correction differs from them by exactly the pixels the test changes.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from napari_paraspinal.cli import main
from napari_paraspinal.core.labels import ES_L, MF_L, MF_R
from napari_paraspinal.project import Project, schema
from napari_paraspinal.project.effort import effort, record_open_time
from napari_paraspinal.project.worklist import set_uncertainty, uncertainty_score


@pytest.fixture(scope="module")
def phantoms(phantom_files) -> list[tuple[Path, np.ndarray]]:
    """Four phantom slices as files (c0..c3) with their true labels."""
    made = [phantom_files(f"c{k}", seed, level="L4-L5") for k, seed in enumerate((11, 12, 13, 14))]
    return [(files.image, files.case.labels) for files in made]


def make_project(root: Path, phantoms: list) -> tuple[Project, list[str]]:
    project = Project.init(root)
    ids = [project.add([path]).ids[0] for path, _ in phantoms]
    return project, ids


def test_uncertainty_score_is_the_mean_over_the_muscle_region() -> None:
    probs = np.zeros((3, 2, 3), np.float32)
    probs[0] = 1.0  # background, certain...
    probs[:, 0, 0] = (0.2, 0.8, 0.0)  # ...except a muscle pixel (uncertainty 0.2)
    probs[:, 0, 1] = (0.6, 0.4, 0.0)  # background, but 40 % muscle: counted (0.4)
    probs[:, 0, 2] = (0.95, 0.05, 0.0)  # 5 % muscle: not counted
    labels = probs.argmax(0)
    assert uncertainty_score(probs, labels) == pytest.approx(0.3)
    # the labels count even where post-processing disagrees with the argmax
    labels[1, 2] = MF_L
    assert uncertainty_score(probs, labels) == pytest.approx(0.2)
    # no muscle at all: the most uncertain
    assert uncertainty_score(np.stack([np.ones((2, 2)), np.zeros((2, 2))]),
                             np.zeros((2, 2), np.uint8)) == 1.0


def test_next_case_by_order_and_uncertainty(tmp_path: Path, phantoms: list, capsys) -> None:
    project, ids = make_project(tmp_path / "p", phantoms)
    for cid, (_, truth) in zip(ids, phantoms, strict=True):
        project.save_labels(cid, truth, "automatic")
    for cid, score in zip(ids, (0.10, 0.40, None, 0.25), strict=True):
        set_uncertainty(project, cid, score)
    assert [c.uncertainty for c in project.cases()] == pytest.approx([0.10, 0.40, None, 0.25])

    assert project.next_case() == ids[0]
    assert project.next_case(after=ids[0]) == ids[1]
    assert project.next_case(after=ids[3]) == ids[0]  # wraps around
    assert project.next_case(by="uncertainty") == ids[1]
    assert project.next_case(after=ids[1], by="uncertainty") == ids[3]

    # corrected and verified cases need no more work
    project.save_labels(ids[1], phantoms[1][1], "corrected")
    project.save_labels(ids[0], phantoms[0][1], "verified")
    assert project.next_case(after=ids[0]) == ids[2]
    assert project.next_case(by="uncertainty") == ids[3]
    assert project.next_case(after=ids[3], by="uncertainty") == ids[2]  # unscored: last
    with pytest.raises(ValueError, match="by must be one of"):
        project.next_case(by="random")
    root = project.root
    project.close()

    capsys.readouterr()
    assert main(["project", "list", str(root)]) == 0
    listed = capsys.readouterr().out
    assert "uncertainty" in listed and "0.400" in listed and "0.250" in listed
    assert main(["project", "next", str(root), "--by", "uncertainty"]) == 0
    assert capsys.readouterr().out.strip() == ids[3]
    assert main(["project", "next", str(root), "--after", ids[2]]) == 0
    assert capsys.readouterr().out.strip() == ids[3]
    with Project.open(root) as p:
        for cid in (ids[2], ids[3]):
            p.save_labels(cid, phantoms[2][1] if cid == ids[2] else phantoms[3][1],
                          "verified")
    assert main(["project", "next", str(root)]) == 1
    assert "no case left" in capsys.readouterr().err


def test_edit_effort_and_time_open_in_the_export(tmp_path: Path, phantoms: list) -> None:
    project, ids = make_project(tmp_path / "p", phantoms[:3])
    truth = phantoms[0][1]
    project.save_labels(ids[0], truth, "automatic")
    corrected = truth.copy()
    rows, cols = np.nonzero(truth == MF_R)
    corrected[rows[:37], cols[:37]] = 0  # 37 muscle pixels removed...
    bg_rows, bg_cols = np.nonzero(truth == 0)
    corrected[bg_rows[:13], bg_cols[:13]] = ES_L  # ...and 13 background pixels painted
    project.save_labels(ids[0], corrected, "corrected")
    project.save_labels(ids[1], phantoms[1][1], "automatic")  # predicted only
    project.save_labels(ids[2], phantoms[2][1], "verified")  # drawn without a prediction
    record_open_time(project, ids[0], 12.5)
    record_open_time(project, ids[0], 3.5)
    record_open_time(project, ids[1], 2.0)
    with pytest.raises(ValueError, match="finite"):
        record_open_time(project, ids[1], -1.0)

    area = project.case(ids[0]).geometry.pixel_area_mm2
    done = effort(project, ids[0])
    assert (done.edit_pixels, done.seconds_open) == (50, 16.0)
    assert done.edit_mm2 == pytest.approx(50 * area)
    assert effort(project, ids[1]).edit_pixels is None
    assert effort(project, ids[2]).edit_pixels is None
    # a newer automatic version is never saved over a person's; verifying the correction
    # unchanged compares the verified version with the same prediction
    project.save_labels(ids[0], corrected, "verified")
    assert effort(project, ids[0]).edit_pixels == 50
    root = project.root
    project.close()

    assert main(["export", str(root), "--out", str(tmp_path / "x.xlsx")]) == 0
    by_case = {r["case"]: r for r in csv.DictReader((tmp_path / "x.csv").open())}
    assert by_case[ids[0]]["edit_pixels"] == "50"
    assert float(by_case[ids[0]]["edit_mm2"]) == pytest.approx(50 * area, abs=0.01)
    assert float(by_case[ids[0]]["seconds_open"]) == 16.0
    assert (by_case[ids[1]]["edit_pixels"], float(by_case[ids[1]]["seconds_open"])) == ("", 2.0)
    assert by_case[ids[2]]["edit_pixels"] == "" and float(by_case[ids[2]]["seconds_open"]) == 0
    assert all(r["uncertainty"] == "" for r in by_case.values())  # none segmented here


def downgrade_to_schema_2(root: Path) -> None:
    """Make the project what napari-paraspinal wrote before uncertainty and authors."""
    db = sqlite3.connect(root / schema.DB_NAME)
    db.executescript("""
        BEGIN;
        ALTER TABLE cases DROP COLUMN uncertainty;
        ALTER TABLE label_versions DROP COLUMN author;
        UPDATE meta SET value = '2' WHERE key = 'schema_version';
        COMMIT;
    """)
    columns = {r[1] for r in db.execute("PRAGMA table_info(cases)")} | \
        {r[1] for r in db.execute("PRAGMA table_info(label_versions)")}
    assert not columns & {"uncertainty", "author"}
    db.close()


def test_a_schema_2_project_opens_and_gains_scores_and_authors(tmp_path: Path,
                                                               phantoms: list) -> None:
    project, ids = make_project(tmp_path / "p", phantoms[:2])
    project.save_labels(ids[0], phantoms[0][1], "automatic")
    root = project.root
    project.close()
    downgrade_to_schema_2(root)
    with Project.open(root) as p:  # upgraded in place
        meta = dict(p.db.execute("SELECT key, value FROM meta").fetchall())
        assert meta["schema_version"] == str(schema.SCHEMA_VERSION) == "3"
        assert [c.uncertainty for c in p.cases()] == [None, None]
        (old,) = p.label_versions(ids[0])
        assert old.author is None  # saved before authors were kept
        assert p.next_case(by="uncertainty") == ids[0]  # unscored: worklist order
        set_uncertainty(p, ids[1], 0.5)
        assert p.next_case(by="uncertainty") == ids[1]
        new = p.save_labels(ids[0], phantoms[0][1], "corrected")
        assert new.author == p.label_versions(ids[0])[-1].author
        assert p.check().ok
