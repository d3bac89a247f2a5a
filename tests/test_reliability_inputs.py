"""Odd inputs and hostile conditions never lose a batch: long, dotted and non-ASCII names,
a full disk, a kill, named pipes, symbolic link loops, over-long paths, bad output folders,
a closed pipe on stdout and DICOM files without a preamble. Every input is a real file
(phantom NIfTI, pydicom's MR_small)."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pydicom
import pytest
from _helpers_io import mr_small, write_series
from napari_paraspinal.models import DEFAULT_MODEL, MODELS_DIR
from openpyxl import load_workbook
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from napari_paraspinal.cli import main
from napari_paraspinal.core import writers
from napari_paraspinal.core.io import list_inputs, read_slice
from napari_paraspinal.core.names import MAX_ID, safe_id
from napari_paraspinal.jobs import Progress

SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
LONG_STEM = "x" * 240
PHANTOMS = ["phantom_L4L5_s000500", "phantom_L5S1_s000501", "phantom_L4L5_s000502"]


def paraspinal(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_paraspinal", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three phantom slices (NIfTI) with their exact label maps."""
    data = tmp_path_factory.mktemp("phantoms")
    assert main(["phantom", str(data), "--n", "3", "--seed", "500"]) == 0
    assert sorted(p.name for p in (data / "images").iterdir()) == sorted(
        f"{s}.nii.gz" for s in PHANTOMS)
    return data


def cases_from(phantoms: Path, root: Path, names: list[str]) -> tuple[Path, Path]:
    """``images/`` and ``labels/`` under ``root`` holding the phantoms under new names."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for stem, name in zip(PHANTOMS, names, strict=False):
        shutil.copy(phantoms / "images" / f"{stem}.nii.gz", images / f"{name}.nii.gz")
        shutil.copy(phantoms / "labels" / f"{stem}.nii.gz", labels / f"{name}.nii.gz")
    return images, labels


def table(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "measurements.csv").open(encoding="utf-8")))


def manifest(out: Path) -> dict:
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------ names and outputs


def test_safe_id_is_bounded_readable_and_unique() -> None:
    long_a, long_b = "a" * 240, "a" * 239 + "b"
    ids = {name: safe_id(name) for name in
           [long_a, long_b, ".", "..", "пациент_1", "пациент_2", "患者", "病例", "Müller",
            "a b&c", "x\udcff"]}
    assert all(SAFE.match(i) and len(i) <= MAX_ID for i in ids.values()), ids
    assert len(set(ids.values())) == len(ids), ids  # distinct names, distinct ids
    assert ids["Müller"] == "Muller" and ids["a b&c"] == "a_b_c"
    assert ids[long_a].startswith("a" * 60) and ids[long_a] != ids[long_b]
    assert ids["пациент_1"].startswith("1-") and ids["患者"].startswith("case-")
    assert safe_id("患者") == ids["患者"]  # stable: the same name, the same id


def test_long_dotted_and_non_ascii_names_all_run(phantoms: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    # a 240-character name, a file called "..nii.gz", and names with no ASCII letters
    names = [LONG_STEM, ".", "пациент"]
    images, labels = cases_from(phantoms, tmp_path, names)
    extra = tmp_path / "more"
    _, more_labels = cases_from(phantoms, extra, ["患者"])
    for p in more_labels.iterdir():
        shutil.copy(p, labels / p.name)
    out = tmp_path / "out"
    given = [str(images / f"{n}.nii.gz") for n in names] + [str(extra / "images" / "患者.nii.gz")]
    status = main(["run", *given, "--labels", str(labels), "--out", str(out), "--quiet"])
    printed = capsys.readouterr()
    assert status == 0, printed
    rows = table(out)
    ids = [r["case"] for r in rows]
    assert [r["status"] for r in rows] == ["read"] * 4
    assert len(set(ids)) == 4 and not any(re.fullmatch(r"case(_\d+)?", i) for i in ids), ids
    assert all(SAFE.match(i) and len(i) <= MAX_ID for i in ids), ids
    for i in ids:
        assert (out / "labels" / f"{i}.nii.gz").is_file()
        assert (out / "overlays" / f"{i}.png").is_file()
    sources = {c["source"] for c in manifest(out)["cases"].values()}
    assert sources == set(given)


def test_case_ids_unique_ignoring_case(phantoms: Path, tmp_path: Path) -> None:
    images, labels = cases_from(phantoms, tmp_path, ["Scan", "scan"])
    out = tmp_path / "out"
    assert main(["run", str(images), "--labels", str(labels), "--out", str(out),
                 "--quiet", "--no-overlays"]) == 0
    ids = [r["case"] for r in table(out)]
    assert len({i.casefold() for i in ids}) == 2, ids


def test_full_disk_fails_one_case_names_the_file_and_the_batch_goes_on(
        phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    images, labels = cases_from(phantoms, tmp_path, ["first", "second", "third"])
    real = writers.sitk.WriteImage

    def full_disk(image, path, *args, **kwargs):  # noqa: ANN001, ANN202
        if "second" in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(image, path, *args, **kwargs)

    monkeypatch.setattr(writers.sitk, "WriteImage", full_disk)
    out = tmp_path / "out"
    status = main(["run", str(images), "--labels", str(labels), "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert status == 1, printed
    rows = {r["case"]: r for r in table(out)}
    assert [rows[c]["status"] for c in ("first", "second", "third")] == ["read", "failed",
                                                                       "read"]
    note = rows["second"]["notes"]
    assert "no space left on device" in note.lower() and "labels/second.nii.gz" in note, note
    assert "second: failed" in printed and "2 of 3 cases done, 1 failed (second)" in printed
    assert not (out / "labels" / "second.nii.gz").exists()
    assert not (out / "overlays" / "second.png").exists()  # written before: removed again
    assert (out / "labels" / "third.nii.gz").is_file()
    entry = manifest(out)["cases"]["second"]
    assert entry["status"] == "failed" and entry["outputs"] == []
    assert not [p for p in (out / "labels").iterdir() if p.name.startswith(".")]


def test_no_n4_with_a_model_writes_numbers_only(phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(phantoms / "images" / f"{PHANTOMS[0]}.nii.gz"), "--no-n4",
                 "--no-overlays", "--out", str(out), "--quiet"]) == 0
    (row,) = table(out)
    assert row["status"] == "segmented" and "bias" not in row and "body" not in row


# ------------------------------------------------------------------ kill and rerun

WRAPPER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import napari_paraspinal.run_batch as run_batch
    import napari_paraspinal.run_output as run_output
    from napari_paraspinal.core import writers
    from napari_paraspinal.cli import main

    marker, point, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    where, name, n = {
        "before case 2": (run_batch, "process_case", 2),
        "writing case 2 labels": (writers.sitk, "WriteImage", 2),
        "writing tables after case 2": (run_output, "write_csv", 2),
        "writing manifest at case 2 start": (run_output, "write_text_atomic", 4),
    }[point]
    real, calls = getattr(where, name), [0]

    def blocked(*a, **k):
        calls[0] += 1
        if calls[0] == n:
            marker.write_text(point)
            while True:
                time.sleep(60)
        return real(*a, **k)

    setattr(where, name, blocked)
    sys.exit(main(args))
""")
KILL_POINTS = ["before case 2", "writing case 2 labels", "writing tables after case 2",
               "writing manifest at case 2 start"]


def killed_run(tmp_path: Path, point: str, args: list[str]) -> int:
    """Run ``paraspinal`` until it reaches ``point`` (it blocks there), SIGKILL it."""
    script, marker = tmp_path / "wrapper.py", tmp_path / "blocked"
    script.write_text(WRAPPER)
    proc = subprocess.Popen([sys.executable, str(script), str(marker), point, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"never reached {point!r}: {out}\n{err}")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_killed_run_keeps_every_finished_case(phantoms: Path, tmp_path: Path,
                                                point: str) -> None:
    images, labels = cases_from(phantoms, tmp_path, ["first", "second", "third"])
    out = tmp_path / "out"
    args = ["run", str(images), "--labels", str(labels), "--out", str(out), "--quiet"]
    assert killed_run(tmp_path, point, args) == -signal.SIGKILL
    record = manifest(out)
    assert record["status"] == "running"  # a killed run is never called complete
    finished = [c for c, e in record["cases"].items() if e["status"] != "running"]
    assert finished == ["first"]
    rows = table(out)  # parses: never half a table
    assert [(r["case"], r["status"]) for r in rows] == [("first", "read")]
    wb = load_workbook(out / "measurements.xlsx")
    assert [r[0] for r in wb["measurements"].iter_rows(min_row=2, values_only=True)] == [
        "first"]
    assert (out / "labels" / "first.nii.gz").is_file()

    # the rerun moves everything of the killed run aside and leaves only its own files
    assert main([*args, "--no-overlays"]) == 0
    record = manifest(out)
    assert record["status"] == "complete"
    aside = out / record["superseded"]["moved_to"]
    assert record["superseded"]["status"] == "running"
    assert (aside / "measurements.csv").is_file() and (aside / "run.json").is_file()
    assert (aside / "overlays" / "first.png").is_file()
    assert not (out / "overlays").exists() or not any((out / "overlays").iterdir())
    assert [r["case"] for r in table(out)] == ["first", "second", "third"]
    leftovers = [p for p in out.rglob(".*") if aside not in p.parents]
    assert leftovers == [], leftovers


def test_xlsx_rewrites_are_bounded_but_the_csv_follows_every_case(
        phantoms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from napari_paraspinal import run_output
    from napari_paraspinal.pipeline import RunConfig
    from napari_paraspinal.run_batch import run

    monkeypatch.setattr(run_output, "XLSX_SHARE", 0.0)  # XLSX only after case 1 and at the end
    images, labels = cases_from(phantoms, tmp_path, ["first", "second", "third"])
    out = tmp_path / "out"
    seen: list[tuple[int, int]] = []

    def progress(event: Progress) -> None:
        if event.stage != "tables":
            tables = manifest(out)["tables"]
            seen.append((tables.get("measurements.csv", {}).get("cases", 0),
                         tables.get("measurements.xlsx", {}).get("cases", 0)))

    run([images], RunConfig(out_dir=out, labels_dir=labels, overlays=False), progress=progress)
    assert seen == [(0, 0), (1, 1), (2, 1)]
    assert manifest(out)["tables"]["measurements.xlsx"]["cases"] == 3
    assert load_workbook(out / "measurements.xlsx")["measurements"].max_row == 4


# ------------------------------------------------------------------ listing


def test_named_pipe_is_refused_not_read(phantoms: Path, tmp_path: Path) -> None:
    images, labels = cases_from(phantoms, tmp_path, ["good"])
    os.mkfifo(images / "pipe.nii.gz")
    os.mkfifo(images / "IM0001")  # no suffix: would be sniffed for a DICOM preamble
    info = paraspinal("info", str(images), timeout=120)
    assert info.returncode == 0, info.stderr
    assert "good.nii.gz" in info.stdout and "pipe.nii.gz: is a named pipe" in info.stderr
    assert "IM0001: is a named pipe" in info.stderr

    out = tmp_path / "out"
    ran = paraspinal("run", str(images), str(images / "pipe.nii.gz"), "--labels",
                     str(labels), "--out", str(out), "--quiet", timeout=120)
    assert ran.returncode == 1, ran.stderr  # the pipe given by name is a failed case
    assert "good: ok" in ran.stdout
    assert "pipe.nii.gz: is a named pipe (FIFO), not a regular file" in ran.stdout
    skipped = manifest(out)["skipped"]
    assert any("IM0001: is a named pipe" in s for s in skipped), skipped

    project = tmp_path / "project"
    assert main(["project", "init", str(project)]) == 0
    added = paraspinal("project", "add", str(project), str(images), timeout=120)
    assert "1 added" in added.stdout, added.stderr
    assert "pipe.nii.gz: is a named pipe" in added.stderr


def test_symlink_loop_is_reported_and_the_good_file_added(
        phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = cases_from(phantoms, tmp_path, ["good"])
    (images / "loop.nii.gz").symlink_to("loop.nii.gz")
    (images / "ping").symlink_to("pong")
    (images / "pong").symlink_to("ping")
    (images / "gone.nii.gz").symlink_to("nowhere.nii.gz")
    (images / "up").symlink_to("..", target_is_directory=True)
    project = tmp_path / "project"
    assert main(["project", "init", str(project)]) == 0
    capsys.readouterr()
    status = main(["project", "add", str(project), str(images)])
    printed = capsys.readouterr()
    assert status == 0, printed
    assert "1 added" in printed.out
    for name in ("loop.nii.gz", "ping", "pong"):
        assert f"{name}: is a symbolic link loop" in printed.err, printed.err
    assert "gone.nii.gz: is a broken symbolic link" in printed.err
    assert "up: a link to a folder: not followed" in printed.err
    with pytest.raises(Exception, match="symbolic link loop"):
        list_inputs([images / "loop.nii.gz"])


def test_hidden_files_and_over_long_paths_are_said(phantoms: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    images, labels = cases_from(phantoms, tmp_path, ["good"])
    shutil.copy(images / "good.nii.gz", images / ".hidden.nii.gz")
    (images / ".cache").mkdir()
    deep = images / "deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    try:  # a tree deeper than PATH_MAX, built relative to folder descriptors
        for _ in range(20):
            os.mkdir("d" * 250, dir_fd=fd)
            child = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("far.nii.gz", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    finally:
        os.close(fd)
    out = tmp_path / "out"
    try:
        status = main(["run", str(images), "--labels", str(labels), "--out", str(out),
                       "--quiet", "--no-overlays"])
        err = capsys.readouterr().err
        assert status == 0, err
        assert "2 hidden file(s) or folder(s)" in err and ".hidden.nii.gz" in err
        assert "the path is too long for the file system" in err, err
        assert len(manifest(out)["skipped"]) == 2
        assert [r["case"] for r in table(out)] == ["good"]
    finally:
        shutil.rmtree(deep)


# ------------------------------------------------------------------ exit status, errors


def test_exit_status_and_summary(phantoms: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture) -> None:
    images, labels = cases_from(phantoms, tmp_path, ["good"])
    (images / "empty.nii.gz").write_bytes(b"")
    assert main(["run", str(images), "--labels", str(labels), "--out",
                 str(tmp_path / "o1"), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 cases done, 1 failed (empty)" in out
    # every case failing is not "no model installed" when the shipped model is there
    assert (MODELS_DIR / DEFAULT_MODEL).is_dir()
    assert main(["run", str(images / "empty.nii.gz"), "--out", str(tmp_path / "o2"),
                 "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "0 of 1 cases done, 1 failed (empty)" in out
    assert "no segmentation model" not in out


def test_bad_output_folders_and_long_paths_are_clear_errors(
        phantoms: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image = str(phantoms / "images" / f"{PHANTOMS[0]}.nii.gz")
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    long = str(tmp_path / ("z" * 300))
    for args, words in (
        (["run", image, "--out", str(a_file)], "is a file, not a folder"),
        (["run", image, "--out", str(a_file / "sub")], "cannot be used as the output folder"),
        (["run", image, "--out", long], "too long for the file system"),
        (["run", long + ".nii.gz", "--out", str(tmp_path / "o")], "too long"),
        (["info", long + ".nii.gz"], "too long"),
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err, (args, err)
    assert a_file.read_text() == "not a folder"


def test_closed_stdout_ends_quietly(phantoms: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    assert main(["project", "init", str(project)]) == 0
    assert main(["project", "add", str(project), str(phantoms / "images")]) == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has gone: every write fails with EPIPE
    try:
        done = subprocess.run([sys.executable, "-m", "napari_paraspinal", "project", "list",
                               str(project)], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


# ------------------------------------------------------------------ DICOM without preamble


def _without_preamble(path: Path) -> None:
    """Drop the 128-byte preamble and "DICM": the file starts at its meta group."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    path.write_bytes(data[132:])


def test_dicom_without_preamble_is_read(tmp_path: Path) -> None:
    # a series whose files lack the preamble is still one series, not a case per file
    series = tmp_path / "series"
    uid, _, pixels = write_series(series, n=4)
    for f in series.iterdir():
        _without_preamble(f)
    listing = list_inputs([series])
    assert [r.series_uid for r in listing.refs] == [uid] and not listing.skipped
    assert read_slice(listing.refs[0], index=2).data.shape == pixels[2].shape

    # a .dcm without preamble nor SOP class, and a bare data set without file meta
    ds = mr_small()
    del ds.SOPClassUID
    pydicom.dcmwrite(tmp_path / "no_sop.dcm", ds)
    _without_preamble(tmp_path / "no_sop.dcm")
    bare = DicomBytesIO()
    bare.is_little_endian, bare.is_implicit_VR = True, True
    write_dataset(bare, mr_small())
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "IM0001").write_bytes(bare.getvalue())
    for path in (tmp_path / "no_sop.dcm", loose):
        (ref,) = list_inputs([path]).refs
        assert read_slice(ref).data.shape == (64, 64), path
    assert main(["info", str(tmp_path / "no_sop.dcm"), str(loose)]) == 0
