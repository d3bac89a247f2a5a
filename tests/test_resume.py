"""``paraspinal run --resume``: a rerun keeps the cases the previous run finished and runs only
the rest (failed, unfinished, changed input, other settings), with the same tables."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from napari_paraspinal.cli import main
from napari_paraspinal.jobs import Cancel, Progress
from napari_paraspinal.pipeline import RunConfig
from napari_paraspinal.run_batch import run

VARYING = {"seconds", "time"}  # how long a case took and when: never equal across runs


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k not in VARYING} for r in csv.DictReader(f)]


def _manifest(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three phantoms and a broken file, and a plain run of them."""
    root = tmp_path_factory.mktemp("cohort")
    assert main(["phantom", str(root), "--n", "3", "--seed", "4242"]) == 0
    (root / "images" / "broken.nii.gz").write_bytes(b"not an image")
    plain = root / "plain"
    assert main(["run", str(root / "images"), "--out", str(plain), "--quiet"]) == 1
    return root / "images", plain


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
        os.utime(dst / p.name, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns))
    return dst


def test_a_resumed_run_keeps_finished_cases_and_reruns_the_rest(cohort, tmp_path) -> None:
    images, plain = cohort
    inputs = _copy(images, tmp_path / "in")
    out = tmp_path / "out"
    assert main(["run", str(inputs), "--out", str(out), "--quiet"]) == 1
    first = _manifest(out)
    label_files = sorted((out / "labels").iterdir())
    stamps = {p.name: p.stat().st_mtime_ns for p in label_files}
    changed = sorted(inputs.glob("phantom_*"))[1]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))

    assert main(["run", str(inputs), "--out", str(out), "--quiet", "--resume"]) == 1
    second = _manifest(out)
    reused = {cid for cid, c in second["cases"].items() if c.get("reused_from")}
    kept = {c for c in first["cases"] if c not in ("broken", changed.name.split(".")[0])}
    assert reused == kept and len(kept) == 2
    assert all(second["cases"][c]["reused_from"] == first["run_id"] for c in kept)
    assert second["cases"]["broken"]["status"] == "failed"  # a failed case runs again
    # the kept cases' label maps were not touched; the changed one was written again
    for p in label_files:
        same = p.stat().st_mtime_ns == stamps[p.name]
        assert same == any(p.name.startswith(c + ".") for c in kept)
    # the tables are those of a plain run, in input order
    assert _rows(out / "measurements.csv") == _rows(plain / "measurements.csv")
    assert second["status"] == "complete"
    aside = out / "superseded" / first["run_id"]
    for cid in kept:  # nothing of a kept case was moved aside
        assert not list(aside.rglob(f"{cid}.*"))


def test_other_settings_run_everything_again(cohort, tmp_path) -> None:
    images, _ = cohort
    out = tmp_path / "out"
    assert main(["run", str(images), "--out", str(out), "--quiet"]) == 1
    assert main(["run", str(images), "--out", str(out), "--quiet", "--resume",
                 "--fat-method", "otsu"]) == 1
    assert not any(c.get("reused_from") for c in _manifest(out)["cases"].values())
    assert {r["fat_method"] for r in _rows(out / "measurements.csv")
            if r["status"] != "failed"} == {"otsu"}


def test_a_cancelled_run_resumes_to_the_full_tables(cohort, tmp_path) -> None:
    images, plain = cohort
    out = tmp_path / "out"
    cancel = Cancel()
    inputs = sorted(str(p) for p in images.iterdir())

    def stop_after_first(event: Progress) -> None:
        cancel.set()  # the case in progress finishes; the next one never starts

    results = run(inputs, RunConfig(out_dir=out), progress=stop_after_first, cancel=cancel)
    # broken.nii.gz sorts first and fails without a slice; the first phantom finishes
    assert [r.status for r in results] == ["failed", "ok"]
    assert _manifest(out)["status"] == "cancelled"
    finished = results[1].case
    results = run(inputs, RunConfig(out_dir=out, resume=True))
    assert len(results) == 4
    cases = _manifest(out)["cases"]
    assert [c for c in cases if cases[c].get("reused_from")] == [finished]
    assert _rows(out / "measurements.csv") == _rows(plain / "measurements.csv")


def test_a_result_pointing_outside_the_folder_is_not_trusted(cohort, tmp_path) -> None:
    images, _ = cohort
    out = tmp_path / "out"
    one = sorted(images.glob("phantom_*"))[0]
    assert main(["run", str(one), "--out", str(out), "--quiet"]) == 0
    (result,) = (out / "results").iterdir()
    data = json.loads(result.read_text())
    data["files"].append("../../../etc/passwd")
    result.write_text(json.dumps(data))
    assert main(["run", str(one), "--out", str(out), "--quiet", "--resume"]) == 0
    assert not any(c.get("reused_from") for c in _manifest(out)["cases"].values())


def test_a_resumed_cluster_run_gives_the_plain_tables(cohort, tmp_path) -> None:
    pytest.importorskip("distributed", reason="cluster runs need Dask distributed "
                                              "(the [cluster] extra)")
    images, plain = cohort
    out = tmp_path / "out"
    first = sorted(images.glob("phantom_*"))[0]
    assert main(["run", str(first), "--out", str(out), "--quiet"]) == 0
    assert main(["run", str(images), "--out", str(out), "--quiet", "--resume",
                 "--cluster", "local", "--workers", "2"]) == 1
    cases = _manifest(out)["cases"]
    assert [c for c in cases if cases[c].get("reused_from")] == [first.name.split(".")[0]]
    assert _rows(out / "measurements.csv") == _rows(plain / "measurements.csv")


def test_a_resumed_bids_run_still_holds_every_case(cohort, tmp_path) -> None:
    images, _ = cohort
    out = tmp_path / "out"
    assert main(["run", str(images), "--out", str(out), "--quiet", "--bids"]) == 1

    def dataset() -> list[str]:
        return sorted(p.relative_to(out).as_posix() for p in out.glob("sub-*/**/*")
                      if p.is_file())

    before = dataset()
    assert len(before) == 3 * 4  # three cases: label map, its sidecar, table and sidecar
    assert main(["run", str(images), "--out", str(out), "--quiet", "--bids", "--resume"]) == 1
    assert sum(bool(c.get("reused_from")) for c in _manifest(out)["cases"].values()) == 3
    assert dataset() == before
