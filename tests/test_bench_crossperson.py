"""The cross-person fine-tuning experiment: the copy-labels floor (exact on itself, between
0 and 1 across people with left kept left), a tiny run through the real project store and
fine-tuning, and the ``bench real --finetune`` report. About a minute on one core."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers_torch import torch_threads
from napari_paraspinal.models import MODELS_DIR

from napari_paraspinal.bench_crossperson import (
    SHARED,
    copy_labels_floor,
    cross_person,
    crossperson_rows,
    spaced_slices,
    write_crossperson_report,
)
from napari_paraspinal.core.labels import BY_VALUE, ES_L, ES_R, MF_L, MF_R
from napari_paraspinal.project import Project
from napari_paraspinal.project.finetune_config import FinetuneConfig
from napari_paraspinal.realdata import default_real_data_dir, read_series_slice, real_series

DATA = default_real_data_dir()
NAMES = ("musclemap_sub0001/fat", "lpm_tum01/fat")
needs_data = pytest.mark.skipif(
    not set(NAMES) <= {s.name for s in real_series(DATA)},
    reason=f"the two real people ({', '.join(NAMES)}) are not in {DATA} (shared/data beside "
           "the repository, or $PARASPINAL_REAL_DATA)",
)
SHORTS = [BY_VALUE[v].short for v in SHARED]
SYNTH_ONLY = str(MODELS_DIR / "paraspinal-synth")  # saw neither person


def by_name(name: str):
    return next(s for s in real_series(DATA) if s.name == name)


def world_x(labels: np.ndarray, geometry, value: int) -> float:
    j, i = np.nonzero(labels == value)
    assert i.size, f"label {value} absent from this slice"
    return float(geometry.index_to_world(i, j)[:, 0].mean())


def test_spaced_slices() -> None:
    assert spaced_slices(20, 10) == [0, 2, 4, 6, 8, 11, 13, 15, 17, 19]
    assert spaced_slices(29, 3) == [0, 14, 28]
    assert spaced_slices(4, 10) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        spaced_slices(5, 0)


@needs_data
def test_floor_of_a_series_against_itself_is_exact() -> None:
    row = copy_labels_floor(by_name(NAMES[0]), by_name(NAMES[0]))
    assert row["slices"] == 20
    assert all(row[s] == 1.0 for s in SHORTS) and row["mean"] == 1.0
    assert row["PS_L"] is None and row["PS_R"] is None  # not annotated by both


@needs_data
def test_floor_between_people_keeps_left_left() -> None:
    a, b = by_name(NAMES[0]), by_name(NAMES[1])
    copied: dict = {}
    row = copy_labels_floor(a, b, predictions=copied)
    assert row["slices"] == b.n_slices() == len(copied)
    assert all(0.0 < row[s] < 1.0 for s in SHORTS) and 0.0 < row["mean"] < 1.0
    for k in (3, 14, 25):
        image, _ = read_series_slice(b, k)
        labels = copied[(b.case, b.contrast, k)]
        assert labels.shape == image.shape
        assert set(np.unique(labels)) <= {0, *SHARED}
        g = image.geometry
        assert world_x(labels, g, MF_L) > world_x(labels, g, MF_R)
        assert world_x(labels, g, ES_L) > world_x(labels, g, ES_R)
    back = copy_labels_floor(b, a)
    assert 0.0 < back["mean"] < 1.0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, object]:
    """3 corrected slices of musclemap, one U-Net epoch, lpm scored on 3 of its slices."""
    work = tmp_path_factory.mktemp("crossperson")
    config = FinetuneConfig(epochs=1, joint_epochs=0, replay=0, replay_check=0, batch_size=2,
                            device="cpu", max_forgetting=None, num_threads=1)
    with torch_threads(1):
        result = cross_person(by_name(NAMES[0]), by_name(NAMES[1]), SYNTH_ONLY, n_slices=3,
                              config=config, work_dir=work, test_slices="every14")
    return result, work


@needs_data
def test_tiny_cross_person_run(tiny_run) -> None:
    res, work = tiny_run
    assert res["train"] == NAMES[0] and res["test"] == NAMES[1]
    assert res["slices_used"] == [0, 10, 19] and res["shared"] == SHORTS
    assert res["status"] in {"promoted", "rejected"} and res["minutes"] > 0
    assert 0.0 <= res["heldout_active"] <= 1.0 and 0.0 <= res["heldout_candidate"] <= 1.0
    for key in ("before", "candidate", "after"):
        row = res[key]
        assert row["slices"] == 3 and row["case"] == "lpm_tum01"
        assert all(0.0 <= row[s] <= 1.0 for s in SHORTS)
        assert 0.0 <= row["mean_shared"] <= 1.0
    assert res["after"] is (res["candidate"] if res["status"] == "promoted" else res["before"])
    # the corrections went in as an annotator's would: MF and ES only, through the store
    with Project.open(work / "project") as project:
        cases = project.training_cases()
        assert len(cases) == 3
        assert all(tc.version.kind == "corrected" and tc.labels == sorted(SHARED)
                   for tc in cases)
        assert [m.id for m in project.models()] == [res["parent"], res["candidate_model"]]
        assert project.active_model().id == (res["candidate_model"]
                                             if res["status"] == "promoted" else res["parent"])


@needs_data
def test_report(tiny_run, tmp_path) -> None:
    res, _ = tiny_run
    floors = {NAMES[1]: {"mean": 0.5}}
    [row] = crossperson_rows([res], floors)
    assert row["slices"] == 3 and row["floor_mean"] == 0.5
    assert row["mean_before"] == res["before"]["mean_shared"]
    assert row["mean_after"] == res["candidate"]["mean_shared"]
    [text] = crossperson_rows([res], floors, arrows=True)
    assert " → " in text["MF_L"]

    paths = write_crossperson_report([res], floors, tmp_path, "head")
    csv_text = paths[0].read_text()
    assert csv_text.startswith("train,test,slices,minutes,status,heldout_active")
    assert "MF_L_before,MF_L_after" in csv_text.splitlines()[0]
    assert "| train | test |" in paths[1].read_text()
    paths = write_crossperson_report([res], None, tmp_path / "again", "head")
    assert paths[1].read_text().startswith("head\n\n|")


@needs_data
def test_a_model_that_saw_either_person_is_refused() -> None:
    with pytest.raises(ValueError, match="trained on lpm_tum01, musclemap_sub0001"):
        cross_person(by_name(NAMES[0]), by_name(NAMES[1]))  # the shipped model saw both
