"""Attacks on the project store, each reproduced on real files and a real SQLite project.

1. A person verifies a case while ``project segment`` works on it: the verification stays the
   latest version (compare-and-set), export measures the verified labels.
2. A source overwritten on the same grid, or gone: ``project check`` names the case, export
   measures every other case and lists the bad one on an ``excluded`` sheet. Old projects
   (schema 1, no fingerprints) still open, are reported "not fingerprinted", and
   ``--repair`` fingerprints them.
10. Two ``project segment`` processes split the cases (a claim per case); a killed worker's
   claim goes stale and is taken over.
14. ``project check`` says what it checked and found, ``--repair`` what it did.

Concurrency is made deterministic by gates (a worker blocks inside segmentation until the
test lets it go), never by sleeping.
"""

from __future__ import annotations

import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from _helpers_io import write_series
from openpyxl import load_workbook

import napari_paraspinal.segment as segment_module
from napari_paraspinal.cli import main
from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.geometry import SliceImage
from napari_paraspinal.core.labels import MF_L
from napari_paraspinal.core.writers import write_image, write_labels
from napari_paraspinal.project import Project, schema
from napari_paraspinal.project import claims as claims_module
from napari_paraspinal.project import fingerprint as fingerprint_module
from napari_paraspinal.project.checking import accept_sources
from napari_paraspinal.project.records import StaleVersionError

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
CLI = [sys.executable, "-c",
       "import sys; from napari_paraspinal.cli import main; sys.exit(main(sys.argv[1:]))"]
#: The CLI, but the first segmentation prints "holding" and waits for a line on stdin: the
#: worker then holds its claim on its first case for as long as the test wants.
GATED_CLI = [sys.executable, "-c", textwrap.dedent("""
    import sys
    import napari_paraspinal.segment as seg
    from napari_paraspinal.cli import main
    real, held = seg.segment_slice, []
    def gated(*args, **kwargs):
        if not held:
            held.append(1)
            print("holding", flush=True)
            sys.stdin.readline()
        return real(*args, **kwargs)
    seg.segment_slice = gated
    sys.exit(main(sys.argv[1:]))
""")]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory, phantom) -> dict:
    """Three phantom slices as NIfTI images (a, b, c) with their true label maps."""
    root = tmp_path_factory.mktemp("phantoms")
    cases = {}
    for name, seed in (("a", 3), ("b", 4), ("c", 5)):
        case = phantom(seed, level="L4-L5")
        write_image(case.image, root / "images" / f"{name}.nii.gz")
        write_labels(case.labels, case.image.geometry, root / "labels" / f"{name}.nii.gz")
        cases[name] = case
    return {"root": root, "cases": cases}


def copy_images(phantoms: dict, folder: Path, names: str = "abc") -> Path:
    """Fresh copies of the phantom images (tests overwrite and delete them)."""
    folder.mkdir(parents=True)
    for n in names:
        (folder / f"{n}.nii.gz").write_bytes(
            (phantoms["root"] / "images" / f"{n}.nii.gz").read_bytes())
    return folder


def new_project(tmp_path: Path, images: Path) -> Path:
    proj = tmp_path / "proj"
    assert main(["project", "init", str(proj)]) == 0
    assert main(["project", "add", str(proj), str(images)]) == 0
    return proj


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


def read_line(proc: subprocess.Popen, expected: str, timeout: float = 300) -> None:
    """Wait for the worker's line ``expected`` (the timeout only guards against a hang)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    assert line.strip() == expected, f"worker said {line!r}, not {expected!r}"


def automatic_versions(proj: Path) -> dict[str, int]:
    with Project.open(proj) as p:
        return {c.id: sum(v.kind == "automatic" for v in p.label_versions(c.id))
                for c in p.cases()}


def sheet(path: Path, name: str) -> list[dict]:
    rows = list(load_workbook(path)[name].iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


# --------------------------------------------------------------------------- 1: CAS


def test_verification_saved_during_segment_stays_latest(phantoms: dict, tmp_path: Path,
                                                         monkeypatch, capsys) -> None:
    """`project correct --kind verified` (another process) lands while the batch segments the
    case: the batch's automatic save is refused, the case stays verified, export measures
    the verified labels."""
    proj = new_project(tmp_path, copy_images(phantoms, tmp_path / "images", "ab"))
    truth = phantoms["root"] / "labels" / "a.nii.gz"
    real, calls = segment_module.segment_slice, []

    def segment_while_a_person_verifies(*args, **kwargs):
        if not calls:  # case a: claimed and read by the batch, now a person verifies it
            done = run_cli("project", "correct", str(proj), "a", str(truth), "--kind",
                           "verified")
            assert done.returncode == 0, done.stderr
            assert "a: saved version 1 (verified)" in done.stdout
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(segment_module, "segment_slice", segment_while_a_person_verifies)
    assert main(["project", "segment", str(proj)]) == 0
    assert "1 segmented, 0 failed, 1 left as they were" in capsys.readouterr().out
    with Project.open(proj) as p:
        assert [(v.version, v.kind) for v in p.label_versions("a")] == [(1, "verified")]
        assert p.case("a").status == "verified"
        assert [v.kind for v in p.label_versions("b")] == ["automatic"]
        assert p.check().clean
        area = float((p.read_version(p.latest_version("a")) == MF_L).sum()) \
            * p.case("a").geometry.pixel_area_mm2
    out = tmp_path / "export.xlsx"
    assert main(["export", str(proj), "--out", str(out)]) == 0
    rows = {r["case"]: r for r in sheet(out, "measurements")}
    assert rows["a"]["label_status"] == "verified" and rows["a"]["label_version"] == 1
    assert rows["a"]["MF_L_csa_mm2"] == pytest.approx(area, abs=0.006)  # 2 decimals


def test_compare_and_set_between_two_project_objects(phantoms: dict, tmp_path: Path) -> None:
    """The batch's save with ``expect_version``: refused once another connection saved a
    version, refused on top of a person's version, and never leaves a file behind."""
    proj = new_project(tmp_path, copy_images(phantoms, tmp_path / "images", "a"))
    labels = phantoms["cases"]["a"].labels
    with Project.open(proj) as worker, Project.open(proj) as person:
        seen = 0  # the worker listed case a without versions
        person.save_labels("a", labels, "verified")
        with pytest.raises(StaleVersionError, match="latest version is 1, the worker read 0"):
            worker.save_labels("a", labels, "automatic", expect_version=seen)
        with pytest.raises(StaleVersionError, match="never supersedes"):
            worker.save_labels("a", labels, "automatic", expect_version=1)
        with pytest.raises(StaleVersionError):
            worker.set_status("a", "failed", "model crashed", expect_version=seen)
        assert worker.case("a").status == "verified"
        assert sorted(p.name for p in (proj / "labels" / "a").iterdir()) == [
            "v001_verified.nii.gz"]
        person.save_labels("a", labels, "corrected")  # people are never refused
        assert worker.check().clean


# --------------------------------------------------------------------------- 10: claims


def test_claims_between_two_project_objects(phantoms: dict, tmp_path: Path) -> None:
    proj = new_project(tmp_path, copy_images(phantoms, tmp_path / "images", "a"))
    with Project.open(proj) as p1, Project.open(proj) as p2:
        one, two = claims_module.Claims(p1), claims_module.Claims(p2)
        assert one.claim("a", ["new"], 0) is None
        assert "another worker has it" in two.claim("a", ["new"], 0)
        (held,) = claims_module.claims(p2)
        assert (held.pid, held.host) == (os.getpid(), claims_module.HOST)
        report = p2.check()
        assert report.clean and any("a segment run is working on it" in n
                                    for n in report.notes)
        one.release("a")
        assert two.claim("a", ["new"], 0) is None
        two.release("a")
        p1.save_labels("a", phantoms["cases"]["a"].labels, "automatic")
        assert "changed since it was listed" in two.claim("a", ["new", "predicted"], 0)
        assert "it is predicted now" in two.claim("a", ["new"], 1)
        # a claim left by a process that is gone: reported, and removed by --repair
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        dead = claims_module.Claims(p1)
        dead.pid = gone.pid
        assert dead.claim("a", ["predicted"], 1) is None
        report = p2.check()
        assert report.ok and not report.clean
        assert report.stale_claims == [f"case a: claimed by pid {gone.pid} on "
                                       f"{claims_module.HOST} since "
                                       f"{claims_module.claims(p2)[0].claimed_at} (its worker "
                                       "is gone)"]
        repaired = p2.repair()
        assert repaired.clean and repaired.repaired == [
            f"removed stale claim: {report.stale_claims[0].removesuffix(' (its worker is gone)')}"]
    # another host's claim expires by age only
    far = claims_module.Claim("a", "x", 1, "elsewhere", "2000-01-01T00:00:00+00:00", 0)
    assert claims_module.is_stale(far)
    now = datetime.now(timezone.utc).isoformat()
    assert not claims_module.is_stale(claims_module.Claim("a", "x", 1, "elsewhere", now, 0))


@posix_only
def test_two_segment_processes_split_the_cases(phantoms: dict, tmp_path: Path) -> None:
    """Worker A holds case a (gated inside its segmentation); worker B runs to the end
    meanwhile; then A finishes. Every case gets exactly one automatic version."""
    proj = new_project(tmp_path, copy_images(phantoms, tmp_path / "images"))
    a = subprocess.Popen([*GATED_CLI, "project", "segment", str(proj)], text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=(tmp_path / "a.err").open("w"))
    try:
        read_line(a, "holding")
        b = run_cli("project", "segment", str(proj))
        assert b.returncode == 0, b.stderr
        assert "2 segmented, 0 failed, 1 left as they were" in b.stdout
        a.stdin.write("go\n")
        a.stdin.flush()
        out, _ = a.communicate(timeout=600)
        assert a.returncode == 0, (tmp_path / "a.err").read_text()
        assert "1 segmented, 0 failed, 2 left as they were" in out
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    assert automatic_versions(proj) == {"a": 1, "b": 1, "c": 1}
    with Project.open(proj) as p:
        assert claims_module.claims(p) == [] and p.check().clean
        assert all(len(p.measurements(c.id)) == 1 for c in p.cases())


@posix_only
def test_claim_of_a_killed_worker_is_taken_over(phantoms: dict, tmp_path: Path) -> None:
    proj = new_project(tmp_path, copy_images(phantoms, tmp_path / "images", "ab"))
    a = subprocess.Popen([*GATED_CLI, "project", "segment", str(proj)], text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        read_line(a, "holding")
    finally:
        a.kill()
        a.wait()
    assert a.returncode == -signal.SIGKILL
    checked = run_cli("project", "check", str(proj))
    assert checked.returncode == 0, checked.stdout
    assert f"leftover: stale claim case a: claimed by pid {a.pid}" in checked.stdout
    b = run_cli("project", "segment", str(proj))
    assert "2 segmented, 0 failed, 0 left as they were" in b.stdout, b.stderr
    assert automatic_versions(proj) == {"a": 1, "b": 1}
    with Project.open(proj) as p:
        assert any("took over the stale claim" in e[3] for e in p.history("a"))
        assert p.check().clean


# --------------------------------------------------------------------------- 2: sources


def test_source_overwritten_on_the_same_grid(phantoms: dict, tmp_path: Path,
                                             capsys) -> None:
    images = copy_images(phantoms, tmp_path / "images")
    proj = new_project(tmp_path, images)
    with Project.open(proj) as p:
        for n in "abc":
            p.save_labels(n, phantoms["cases"][n].labels, "corrected")
    capsys.readouterr()
    assert main(["project", "check", str(proj)]) == 0
    assert "3 intact, 0 changed" in capsys.readouterr().out
    # a's file overwritten on a's grid (mirrored left-right: still reads, same grid)
    a = phantoms["cases"]["a"].image
    write_image(SliceImage(np.ascontiguousarray(a.data[:, ::-1]), a.geometry),
                images / "a.nii.gz")
    assert main(["project", "check", str(proj)]) == 1
    out = capsys.readouterr().out
    assert "2 intact, 1 changed, 0 missing" in out
    assert f"problem: case a: source changed: {images / 'a.nii.gz'}" in out
    assert "SHA-256 differs" in out and out.strip().endswith("1 problem(s) found")

    xlsx = tmp_path / "export.xlsx"
    with pytest.warns(UserWarning, match="1 case.* not measured.*a: source changed"):
        assert main(["export", str(proj), "--out", str(xlsx)]) == 0
    assert sorted(r["case"] for r in sheet(xlsx, "measurements")) == ["b", "c"]
    (excluded,) = sheet(xlsx, "excluded")
    assert excluded["case"] == "a" and "source changed" in excluded["problem"]
    prov = sheet(xlsx, "provenance")
    assert all(r["source_check"] == "intact" and len(r["source_sha256"]) == 64 for r in prov)
    # a case without labels whose source changed is not segmented: it fails, saying why
    d = images / "d.nii.gz"
    d.write_bytes((images / "c.nii.gz").read_bytes())
    assert main(["project", "add", str(proj), str(d)]) == 0
    c = phantoms["cases"]["c"].image
    write_image(SliceImage(np.ascontiguousarray(c.data[::-1]), c.geometry), d)
    capsys.readouterr()
    assert main(["project", "segment", str(proj)]) == 0
    assert "0 segmented, 1 failed" in capsys.readouterr().out
    with Project.open(proj) as p:
        assert p.case("d").status == "failed" and "source changed" in p.case("d").message
        assert p.label_versions("d") == []

    # a person who checked the labels still fit accepts the new source
    capsys.readouterr()
    assert main(["project", "check", str(proj), "--accept-sources"]) == 0
    out = capsys.readouterr().out
    assert "repaired: case a: changed source accepted" in out and "4 intact" in out


def test_read_image_refuses_a_changed_or_missing_source(phantoms: dict, tmp_path: Path,
                                                        monkeypatch) -> None:
    """What the napari widget and fine-tuning read: the source must match its fingerprint.
    Each source is hashed once per project object; a file rewritten in place with its size
    and mtime put back is still hashed again and caught."""
    images = tmp_path / "images"
    a, b = phantoms["cases"]["a"].image, phantoms["cases"]["b"].image
    write_image(a, images / "a.nii")  # uncompressed: another image has the very same size
    write_image(b, images / "b.nii")
    proj = new_project(tmp_path, images)
    hashed, real = [], fingerprint_module.sha256_of
    monkeypatch.setattr(fingerprint_module, "sha256_of",
                        lambda path: (hashed.append(Path(path).name), real(path))[1])
    path = images / "a.nii"
    with Project.open(proj) as p:
        for _ in range(3):
            np.testing.assert_array_equal(p.read_image("a").data, a.data)
        p.read_image("b")
        assert hashed == ["a.nii", "b.nii"]  # once per source, not once per read

        st = path.stat()
        mirrored = SliceImage(np.ascontiguousarray(a.data[:, ::-1]), a.geometry)
        other = write_image(mirrored, tmp_path / "mirrored.nii").read_bytes()
        assert len(other) == st.st_size
        time.sleep(0.05)  # past the file system's timestamp granularity (for the ctime)
        with path.open("r+b") as fh:  # in place: same inode, same size
            fh.write(other)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old mtime put back
        now = path.stat()
        assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size,
                                                              st.st_mtime_ns)
        for reader in (p, Project.open(proj)):  # this session and a fresh one
            with pytest.raises(InputError) as refused:
                reader.read_image("a")
            assert refused.value.source == str(path)
            problem = refused.value.problem
            assert problem.startswith("source changed: the source has changed since case "
                                      "'a' was added (SHA-256 differs")
            assert "`paraspinal project check --accept-sources`" in problem
        reader.close()

        (images / "b.nii").unlink()
        with pytest.raises(InputError, match="source missing: the source has changed since "
                                             "case 'b' was added") as refused:
            p.read_image("b")
        assert refused.value.source == str(images / "b.nii")
        assert "--accept-sources" in refused.value.problem

        # a person who checked the labels still fit accepts the new source
        assert [line.split(":")[0] for line in accept_sources(p)] == ["case a"]
        np.testing.assert_array_equal(p.read_image("a").data, mirrored.data)


def test_one_missing_source_of_17_cases(phantoms: dict, tmp_path: Path, capsys) -> None:
    base = phantoms["cases"]["a"]
    images = tmp_path / "images"
    for k in range(17):
        write_image(SliceImage(base.image.data * (1 + k / 100), base.image.geometry),
                    images / f"s{k:02d}.nii.gz")
    proj = new_project(tmp_path, images)
    with Project.open(proj) as p:
        for c in p.cases():
            p.save_labels(c.id, base.labels, "corrected")
    (images / "s07.nii.gz").unlink()
    capsys.readouterr()
    assert main(["project", "check", str(proj)]) == 1
    out = capsys.readouterr().out
    assert "checked: 17 case(s)" in out and "16 intact, 0 changed, 1 missing" in out
    assert f"problem: case s07: source missing: {images / 's07.nii.gz'}" in out
    xlsx = tmp_path / "export.xlsx"
    with pytest.warns(UserWarning, match="s07: source missing"):
        assert main(["export", str(proj), "--out", str(xlsx)]) == 0
    measured = sheet(xlsx, "measurements")
    assert len(measured) == 16 and "s07" not in {r["case"] for r in measured}
    assert [r["case"] for r in sheet(xlsx, "excluded")] == ["s07"]
    assert len(xlsx.with_suffix(".csv").read_text().splitlines()) == 17  # header + 16


def test_dicom_series_fingerprint(tmp_path: Path, capsys) -> None:
    """A series is fingerprinted by its own files: another series in the same folder may
    change; a file of this series changed or removed is caught."""
    folder = tmp_path / "dicom"
    uid, _, _ = write_series(folder, n=3)
    write_series(tmp_path / "other", n=2)
    for f in sorted((tmp_path / "other").iterdir()):
        f.rename(folder / f"OTHER_{f.name}")
    proj = tmp_path / "proj"
    Project.init(proj).close()
    with Project.open(proj) as p:
        assert len(p.add([folder]).added) == 5
        assert all(c.fingerprint is not None for c in p.cases())
        ours = [c.id for c in p.cases() if c.series_uid == uid]
        assert len(ours) == 3
        (folder / "OTHER_IM0001").write_bytes((folder / "OTHER_IM0002").read_bytes())
        report = p.check()
        assert report.checked["sources_changed"] == 2 and report.checked["sources_intact"] == 3
        assert not any(f"case {cid}:" in s for cid in ours for s in report.sources)
        data = bytearray((folder / "IM0002").read_bytes())
        data[-10:] = bytes(x ^ 0xFF for x in data[-10:])  # pixels changed, header as before
        (folder / "IM0002").write_bytes(bytes(data))
        report = p.check()
        assert report.checked["sources_changed"] == 5 and len(report.sources) == 5
        assert all("SHA-256 differs" in s for s in report.sources)
        for f in folder.glob("OTHER_*"):
            f.unlink()
        report = p.check()
        assert report.checked["sources_missing"] == 2
        assert sum("source missing" in s for s in report.sources) == 2


# --------------------------------------------------------------------------- old projects


def downgrade_to_schema_1(proj: Path) -> None:
    """Make the project what napari-paraspinal wrote before fingerprints and claims."""
    db = sqlite3.connect(proj / schema.DB_NAME)
    db.executescript("""
        BEGIN;
        DROP TABLE claims;
        ALTER TABLE cases DROP COLUMN source_size;
        ALTER TABLE cases DROP COLUMN source_mtime_ns;
        ALTER TABLE cases DROP COLUMN source_sha256;
        ALTER TABLE cases DROP COLUMN uncertainty;
        ALTER TABLE label_versions DROP COLUMN author;
        UPDATE meta SET value = '1' WHERE key = 'schema_version';
        COMMIT;
    """)
    v1 = sqlite3.connect(":memory:")
    v1.executescript(schema.SCHEMA_V1)
    for table in ("cases", "label_versions", "meta"):
        assert db.execute(f"PRAGMA table_info({table})").fetchall() == \
            v1.execute(f"PRAGMA table_info({table})").fetchall()
    assert {r[0] for r in db.execute("SELECT name FROM sqlite_master")} == \
        {r[0] for r in v1.execute("SELECT name FROM sqlite_master")}
    db.close()


def test_old_project_opens_and_is_fingerprinted_on_repair(phantoms: dict, tmp_path: Path,
                                                          capsys) -> None:
    images = copy_images(phantoms, tmp_path / "images", "ab")
    proj = new_project(tmp_path, images)
    with Project.open(proj) as p:
        p.save_labels("a", phantoms["cases"]["a"].labels, "corrected")
    downgrade_to_schema_1(proj)
    with Project.open(proj) as p:  # upgraded in place
        meta = dict(p.db.execute("SELECT key, value FROM meta").fetchall())
        assert meta["schema_version"] == str(schema.SCHEMA_VERSION) == "3"
        assert [c.fingerprint for c in p.cases()] == [None, None]
        assert [v.kind for v in p.label_versions("a")] == ["corrected"]
    capsys.readouterr()
    assert main(["project", "check", str(proj)]) == 0
    out = capsys.readouterr().out
    assert "0 intact, 0 changed, 0 missing, 2 not fingerprinted" in out
    assert "note: 2 case(s) not fingerprinted" in out and ": a, b" in out
    assert main(["export", str(proj), "--out", str(tmp_path / "x.xlsx")]) == 0
    (row,) = sheet(tmp_path / "x.xlsx", "provenance")
    assert row["case"] == "a" and row["source_check"] == "not fingerprinted"

    assert main(["project", "check", str(proj), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "repaired: case a: repair: source fingerprinted as it is now" in out
    assert "repaired: case b: repair" in out and "2 intact" in out
    (images / "b.nii.gz").unlink()
    assert main(["project", "check", str(proj)]) == 1
    assert "problem: case b: source missing" in capsys.readouterr().out


# --------------------------------------------------------------------------- 14: reports


def test_check_and_repair_say_what_they_did(phantoms: dict, tmp_path: Path, capsys) -> None:
    proj = new_project(tmp_path, copy_images(phantoms, tmp_path / "images", "a"))
    with Project.open(proj) as p:
        v1 = p.save_labels("a", phantoms["cases"]["a"].labels, "automatic")
    orphan = proj / "labels" / "a" / "v007_corrected.nii.gz"
    orphan.write_bytes(v1.path.read_bytes())
    (proj / ".stage-leftover.sqlite").write_bytes(b"half")
    capsys.readouterr()
    assert main(["project", "check", str(proj)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("checked: 1 case(s) from 1 source file(s) or series; case "
                             "sources 1 intact, 0 changed, 0 missing, 0 not fingerprinted;")
    assert "1 label version(s), files hashed; 0 model(s); 0 claim(s); database integrity ok" \
        in out[0]
    assert "leftover: orphan file labels/a/v007_corrected.nii.gz" in out
    assert "leftover: temporary file .stage-leftover.sqlite" in out
    assert out[-1] == "consistent; 2 harmless leftover(s) (--repair sets them aside)"

    assert main(["project", "check", str(proj), "--repair"]) == 0
    out = capsys.readouterr().out.splitlines()
    moved = [line for line in out if line.startswith("repaired: moved orphan "
                                                     "labels/a/v007_corrected.nii.gz to ")]
    assert len(moved) == 1 and "repaired: removed temporary .stage-leftover.sqlite" in out
    dest = proj / moved[0].rsplit(" to ", 1)[1]
    assert dest.is_file() and dest.read_bytes() == v1.path.read_bytes()
    assert not orphan.exists() and out[-1] == "consistent"
    assert main(["project", "check", str(proj), "--repair"]) == 0
    assert "repaired: nothing needed it" in capsys.readouterr().out

    v1.path.write_bytes(v1.path.read_bytes() + b"x")
    assert main(["project", "check", str(proj)]) == 1
    out = capsys.readouterr().out
    assert "problem: a v1 automatic (labels/a/v001_automatic.nii.gz): file differs" in out
