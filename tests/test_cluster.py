"""``paraspinal run --cluster``: the cases as Dask tasks give the same tables as a plain run,
a failing case fails alone, and a scheduler that cannot be reached is one clear message."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from napari_paraspinal.cli import main
from napari_paraspinal.realdata import default_real_data_dir

pytest.importorskip("distributed", reason="cluster runs need Dask distributed "
                                          "(the [cluster] extra)")

VARYING = {"seconds", "time"}  # how long a case took and when: never equal across runs


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    assert main(["phantom", str(root), "--n", "3", "--seed", "31337"]) == 0
    (root / "images" / "broken.nii.gz").write_bytes(b"not an image")
    return root / "images"


def test_a_local_cluster_gives_the_plain_run_tables(inputs: Path, tmp_path: Path) -> None:
    assert main(["run", str(inputs), "--out", str(tmp_path / "plain"), "--quiet"]) == 1
    assert main(["run", str(inputs), "--out", str(tmp_path / "dask"), "--quiet",
                 "--cluster", "local", "--workers", "2"]) == 1  # the broken case fails
    plain, dask = _rows(tmp_path / "plain" / "measurements.csv"), \
        _rows(tmp_path / "dask" / "measurements.csv")
    assert [r["case"] for r in dask] == [r["case"] for r in plain]  # input order kept
    assert len(plain) == 4 and sum(r["status"] == "failed" for r in dask) == 1
    for a, b in zip(plain, dask, strict=True):
        assert {k: v for k, v in a.items() if k not in VARYING} == \
            {k: v for k, v in b.items() if k not in VARYING}
    assert sum(bool(r.get("MF_L_csa_mm2")) for r in dask) == 3
    for name in ("labels", "overlays"):
        assert sorted(p.name for p in (tmp_path / "dask" / name).iterdir()) == \
            sorted(p.name for p in (tmp_path / "plain" / name).iterdir())
    manifest = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert manifest["status"] == "complete"
    assert sorted(c["status"] for c in manifest["cases"].values()) == ["failed", "ok", "ok",
                                                                        "ok"]
    assert manifest["tables"]["measurements.xlsx"]["cases"] == 4


def test_an_unreachable_scheduler_is_one_message(inputs: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    code = main(["run", str(inputs), "--out", str(tmp_path / "out"),
                 "--cluster", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2
    assert "tcp://127.0.0.1:9" in err and "no Dask scheduler reachable" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "run.json").exists()  # nothing written


def test_workers_only_size_a_local_cluster(inputs: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(inputs), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err


def test_project_segment_on_a_local_cluster_matches_a_plain_one(inputs: Path,
                                                                tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    for path in inputs.glob("phantom_*"):
        (good / path.name).write_bytes(path.read_bytes())
    exports = {}
    for how, extra in (("plain", []), ("dask", ["--cluster", "local", "--workers", "2"])):
        proj = str(tmp_path / how)
        assert main(["project", "init", proj]) == 0
        assert main(["project", "add", proj, str(good)]) == 0
        assert main(["project", "segment", proj, *extra]) == 0
        assert main(["export", proj, "--out", str(tmp_path / f"{how}.xlsx")]) == 0
        exports[how] = _rows(tmp_path / f"{how}.csv")
    assert len(exports["plain"]) == 3
    assert exports["dask"] == exports["plain"]  # no time column: every cell equal
    from napari_paraspinal.project.store import Project

    with Project.open(tmp_path / "dask") as project:
        for case in project.cases():
            assert case.status == "predicted"
            assert [v.kind for v in project.label_versions(case.id)] == ["automatic"]


REAL = default_real_data_dir() / "lpm_tum01"


@pytest.mark.skipif(not (REAL / "water.nii.gz").is_file(),
                    reason=f"real Dixon case not found in {REAL}")
def test_a_real_dixon_pair_gives_the_plain_run_tables(tmp_path: Path) -> None:
    args = ["--water", str(REAL / "water.nii.gz"), "--fat", str(REAL / "fat.nii.gz"),
            "--slices", "4,14", "--quiet"]
    assert main(["run", *args, "--out", str(tmp_path / "plain")]) == 0
    assert main(["run", *args, "--out", str(tmp_path / "dask"), "--cluster", "local",
                 "--workers", "2"]) == 0
    plain, dask = (_rows(tmp_path / name / "measurements.csv") for name in ("plain", "dask"))
    assert len(plain) == 2 and any(r.get("MF_L_ff_pct") for r in plain)
    for a, b in zip(plain, dask, strict=True):
        assert {k: v for k, v in a.items() if k not in VARYING} == \
            {k: v for k, v in b.items() if k not in VARYING}
