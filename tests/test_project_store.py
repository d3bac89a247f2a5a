"""The project store: cases, label versions that are never overwritten, partial labels,
statuses, the model registry, bad inputs, and runs killed in the middle of a batch or a save.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_io import bundled, write_series

from napari_paraspinal.core.errors import InputError
from napari_paraspinal.core.geometry import Geometry, SliceImage
from napari_paraspinal.core.io import InputRef, read_labels, read_slice
from napari_paraspinal.core.labels import ES_L, ES_R, MF_L, MF_R, PS_L, PS_R
from napari_paraspinal.core.writers import write_image
from napari_paraspinal.nets.bundle import ModelCard, load_bundle, save_bundle
from napari_paraspinal.nets.segmenter import Segmenter, SegmenterConfig
from napari_paraspinal.project import Project, ProjectError
from napari_paraspinal.project import store as store_module
from napari_paraspinal.project.records import StaleVersionError

PARTIAL = [MF_L, MF_R, ES_L, ES_R]
NOTES = "atlas/notes.md"
TABLES = ("meta", "cases", "label_versions", "measurements", "models", "events")
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory, phantom) -> dict:
    """Two phantom slices written as NIfTI alone in ``images/`` (names a and b)."""
    folder = tmp_path_factory.mktemp("phantoms") / "images"
    cases = {}
    for name, seed in (("a", 3), ("b", 4)):
        case = phantom(seed, level="L4-L5")
        write_image(case.image, folder / f"{name}.nii.gz")
        cases[name] = case
    return {"folder": folder, "cases": cases}


@pytest.fixture
def project(tmp_path: Path):
    with Project.init(tmp_path / "proj") as p:
        yield p


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(p: Project) -> dict:
    return {t: [tuple(r) for r in p.db.execute(f"SELECT * FROM {t} ORDER BY rowid")]
            for t in TABLES}


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def make_bundle(folder: Path, name: str, version: str, parent: str | None = None,
                seed: int = 0) -> Path:
    """A real bundle, as training writes one (:func:`save_bundle`): a small Segmenter's
    weights, a card that fits the schema and hashes every file, and an extra file."""
    torch.manual_seed(seed)
    model = Segmenter(SegmenterConfig(unet={"base_width": 4}, use_crf=False))
    notes = folder.parent / f"{folder.name}-notes.md"
    notes.write_text(f"extra file {seed}")
    card = ModelCard(name=name, version=version, parent=parent, network=model.to_dict(),
                     data={"cases": 12}, metrics={"dice": 0.9 + seed / 100})
    return save_bundle(folder, model.state_dict(), card, extra_files={NOTES: notes})


def edit_card(bundle: Path, *remove: str, **fields: object) -> None:
    """Rewrite a bundle's card.json: fields removed, fields set."""
    card = json.loads((bundle / "card.json").read_text())
    card = {k: v for k, v in {**card, **fields}.items() if k not in remove}
    (bundle / "card.json").write_text(json.dumps(card))


# --------------------------------------------------------------------------- create, open


def test_init_open_and_refuse(tmp_path: Path) -> None:
    root = tmp_path / "new" / "proj"
    with Project.init(root) as p:
        assert (root / "project.sqlite").is_file()
        assert (root / "labels").is_dir() and (root / "models").is_dir()
        assert p.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert p.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        meta = {r[0]: r[1] for r in p.db.execute("SELECT key, value FROM meta")}
        assert meta["schema_version"] == str(store_module.SCHEMA_VERSION)
    assert [x.name for x in root.iterdir() if x.name.startswith(".")] == []
    with pytest.raises(ProjectError, match="already exists"):
        Project.init(root)
    with Project.open(root) as p:
        assert p.cases() == []
    with pytest.raises(ProjectError, match="not a napari-paraspinal project"):
        Project.open(tmp_path)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "project.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ProjectError, match="not a project database"):
        Project.open(fake)


# --------------------------------------------------------------------------- cases


def test_add_files_folders_dicom_and_readd(project: Project, phantoms: dict,
                                           tmp_path: Path) -> None:
    mr = bundled("MR_small.dcm")
    result = project.add([phantoms["folder"], mr])
    assert result.added == ["a", "b", "MR_small"] and not result.failed
    a = project.case("a")
    assert a.status == "new" and a.slice_index == 0 and a.source == str(
        (phantoms["folder"] / "a.nii.gz").resolve())
    assert a.geometry.same_grid(phantoms["cases"]["a"].image.geometry)

    series = tmp_path / "dicom" / "series1"
    uid, origins, pixels = write_series(series, n=5)
    result = project.add([series], slices=[2])
    assert result.added == ["series1_s002"]
    case = project.case("series1_s002")
    assert (case.series_uid, case.slice_index, case.slice_count) == (uid, 2, 5)
    np.testing.assert_array_equal(project.read_image("series1_s002").data,
                                  read_slice(InputRef(series, uid), index=2).data)
    np.testing.assert_allclose(case.geometry.origin, origins[2], atol=1e-3)

    before = snapshot(project)
    again = project.add([phantoms["folder"] / "a.nii.gz", phantoms["folder"], mr])
    assert again.added == [] and again.existing == ["a", "a", "b", "MR_small"]
    assert project.add([series], slices=[2]).existing == ["series1_s002"]
    assert snapshot(project) == before
    # without a choice every slice of a stack becomes a case; slice 2 is there already
    every = project.add([series])
    assert every.added == ["series1_s000", "series1_s001", "series1_s003", "series1_s004"]
    assert every.existing == ["series1_s002"]
    assert [project.case(c).slice_index for c in every.added] == [0, 1, 3, 4]
    assert project.status_counts() == {"new": 8, "predicted": 0, "corrected": 0,
                                       "verified": 0, "failed": 0}
    missing = project.add([series], slices=[7])
    assert not missing.added and "slice 7 does not exist" in str(missing.failed[0])


def test_bad_inputs_are_reported_and_change_nothing(project: Project, phantoms: dict,
                                                    tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "garbage.nii.gz").write_bytes(b"\x00not an image" * 50)
    good = (phantoms["folder"] / "a.nii.gz").read_bytes()
    (bad / "truncated.nii.gz").write_bytes(gzip.compress(gzip.decompress(good)[:2000]))
    (bad / "empty.dcm").write_bytes(b"")
    zeros = SliceImage(np.zeros((32, 32), np.float32), Geometry((32, 32), (1.0, 1.0, 4.0)))
    write_image(zeros, bad / "zeros.nii.gz")
    before = snapshot(project)
    result = project.add([bad, tmp_path / "missing.nii.gz"])
    assert result.added == [] and result.existing == []
    named = sorted(Path(err.source).name for err in result.failed)
    assert named == ["empty.dcm", "garbage.nii.gz", "missing.nii.gz", "truncated.nii.gz",
                     "zeros.nii.gz"]
    assert all(isinstance(err, InputError) and err.problem for err in result.failed)
    assert snapshot(project) == before
    assert files_under(project.root / "labels") == []

    mixed = project.add([bad / "garbage.nii.gz", phantoms["folder"] / "b.nii.gz"])
    assert mixed.added == ["b"] and len(mixed.failed) == 1


def test_bad_label_maps_are_refused_without_a_trace(project: Project, phantoms: dict) -> None:
    project.add([phantoms["folder"] / "a.nii.gz"])
    labels = phantoms["cases"]["a"].labels
    before = snapshot(project)
    with pytest.raises(ValueError, match="does not match"):
        project.save_labels("a", labels[:-1], "automatic")
    with pytest.raises(ValueError, match="whole numbers"):
        project.save_labels("a", labels + 0.5, "corrected")
    with pytest.raises(ValueError, match="0–8"):
        project.save_labels("a", labels + 9, "corrected")
    with pytest.raises(ValueError, match="kind"):
        project.save_labels("a", labels, "final")
    with pytest.raises(ValueError, match="labelled"):
        project.save_labels("a", labels, "corrected", labelled=[0, 12])
    with pytest.raises(ProjectError, match="not registered"):
        project.save_labels("a", labels, "automatic", model_id="nope")
    with pytest.raises(ProjectError, match="no case"):
        project.save_labels("zz", labels, "automatic")
    assert snapshot(project) == before
    assert files_under(project.root / "labels" / "a") == []
    assert project.check().clean


def test_failed_transaction_leaves_no_file(project: Project, phantoms: dict,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    project.add([phantoms["folder"] / "a.nii.gz"])
    project.save_labels("a", phantoms["cases"]["a"].labels, "automatic")
    before = snapshot(project)

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Project, "_log", fail)
    with pytest.raises(OSError, match="disk full"):
        project.save_labels("a", phantoms["cases"]["a"].labels, "corrected")
    monkeypatch.undo()
    assert snapshot(project) == before
    assert files_under(project.root / "labels" / "a") == ["v001_automatic.nii.gz"]
    assert project.save_labels("a", phantoms["cases"]["a"].labels, "corrected").version == 2
    assert project.check().clean


# --------------------------------------------------------------------------- labels


def test_label_versions_are_kept_and_never_overwritten(project: Project, phantoms: dict,
                                                       tmp_path: Path) -> None:
    project.add([phantoms["folder"] / "a.nii.gz"])
    mid = project.register_model(make_bundle(tmp_path / "b1", "net", "1"), active=True)
    auto = phantoms["cases"]["a"].labels
    corrected = auto.copy()
    corrected[corrected == MF_L] = 0
    verified = corrected.copy()
    verified[:4, :4] = ES_R

    v1 = project.save_labels("a", auto, "automatic", model_id=mid)
    assert project.case("a").status == "predicted"
    digest1, stat1 = sha256(v1.path), v1.path.stat()
    v2 = project.save_labels("a", corrected, "corrected", labelled=PARTIAL)
    assert project.case("a").status == "corrected"
    v3 = project.save_labels("a", verified, "verified")
    assert project.case("a").status == "verified"

    versions = project.label_versions("a")
    assert [(v.version, v.kind) for v in versions] == [
        (1, "automatic"), (2, "corrected"), (3, "verified")]
    assert [v.relpath for v in versions] == [
        "labels/a/v001_automatic.nii.gz", "labels/a/v002_corrected.nii.gz",
        "labels/a/v003_verified.nii.gz"]
    for v in versions:
        assert v.path.is_file() and sha256(v.path) == v.sha256
    assert sha256(v1.path) == digest1 and v1.path.stat().st_mtime_ns == stat1.st_mtime_ns
    assert versions[0].model_id == mid and versions[1].model_id is None
    assert versions[1].labelled == PARTIAL and versions[2].labelled == list(range(1, 9))

    geometry = project.case("a").geometry
    latest, row = project.latest_labels("a")
    assert row == v3 and np.array_equal(latest, verified)
    arr, row = project.latest_labels("a", kinds=["corrected"])
    assert row == v2 and np.array_equal(arr, corrected)
    np.testing.assert_array_equal(read_labels(row.path, geometry), corrected)
    arr, row = project.latest_labels("a", kinds=["automatic"])
    assert row == v1 and np.array_equal(arr, auto)

    with pytest.raises(sqlite3.IntegrityError, match="never changed"):
        project.db.execute("UPDATE label_versions SET path = 'x' WHERE id = ?", (v1.id,))
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        project.db.execute("DELETE FROM label_versions")
    with pytest.raises(FileExistsError):
        store_module.place_new(v3.path, v1.path)
    assert sha256(v1.path) == digest1

    orphan = v1.path.parent / "v004_corrected.nii.gz"
    orphan.write_bytes(b"left by an interrupted save")
    v5 = project.save_labels("a", corrected, "corrected", labelled=[PS_L])
    assert v5.version == 5 and orphan.read_bytes() == b"left by an interrupted save"
    report = project.check()
    assert report.ok and report.orphan_files == ["labels/a/v004_corrected.nii.gz"]

    v1.path.write_bytes(v1.path.read_bytes() + b"x")
    report = project.check()
    assert not report.ok and report.hash_mismatches
    with pytest.raises(ProjectError, match="SHA-256"):
        project.latest_labels("a", kinds=["automatic"])


def test_partial_labels_training_cases_and_status(project: Project, phantoms: dict) -> None:
    project.add([phantoms["folder"]])
    la, lb = phantoms["cases"]["a"].labels, phantoms["cases"]["b"].labels
    project.save_labels("a", la, "automatic")
    project.save_labels("b", lb, "automatic")
    assert project.training_cases() == []
    assert project.case("b").verified_labels == []

    project.save_labels("b", lb, "corrected", labelled=PARTIAL)
    (tc,) = project.training_cases()
    assert tc.case.id == "b" and tc.labels == PARTIAL and tc.version.version == 2
    project.save_labels("b", lb, "corrected", labelled=[PS_L, PS_R])
    assert project.case("b").verified_labels == [PS_L, PS_R, *PARTIAL]
    assert project.training_cases()[0].labels == [PS_L, PS_R, *PARTIAL]
    assert project.status_counts() == {"new": 0, "predicted": 1, "corrected": 1,
                                       "verified": 0, "failed": 0}
    assert [c.id for c in project.cases("corrected")] == ["b"]

    # an automatic version never supersedes a person's, even without expect_version
    before = snapshot(project)
    for labels in (lb, np.zeros_like(lb)):
        with pytest.raises(StaleVersionError, match="latest version 3 is corrected by a "
                                                    "person; an automatic version never "
                                                    "supersedes it"):
            project.save_labels("b", labels, "automatic")
    assert snapshot(project) == before
    assert files_under(project.root / "labels" / "b") == [
        "v001_automatic.nii.gz", "v002_corrected.nii.gz", "v003_corrected.nii.gz"]
    assert project.case("b").status == "corrected"
    assert project.case("b").verified_labels == [PS_L, PS_R, *PARTIAL]
    assert [t.case.id for t in project.training_cases()] == ["b"]
    v2 = project.save_labels("a", la, "automatic")  # automatic over automatic: a re-run
    assert v2.version == 2 and project.case("a").status == "predicted"

    project.save_labels("a", la, "verified", labelled=PARTIAL)
    with pytest.raises(StaleVersionError, match="is verified by a person"):
        project.save_labels("a", la, "automatic")
    project.set_status("a", "failed", "registration failed")
    assert project.case("a").message == "registration failed"
    assert [t.case.id for t in project.training_cases()] == ["b"]
    with pytest.raises(ProjectError, match="cannot be 'corrected'"):
        project.set_status("a", "corrected")
    project.set_status("a", "verified")
    assert [t.case.id for t in project.training_cases()] == ["a", "b"]
    assert project.save_labels("a", la, "corrected", labelled=[PS_L]).version == 4
    with pytest.raises(ValueError, match="status"):
        project.set_status("a", "done")
    assert project.check().clean


def test_qc_level_and_measurements(project: Project, phantoms: dict) -> None:
    project.add([phantoms["folder"]])
    project.set_qc("a", {"registration_flagged": np.bool_(True), "correlation": np.float32(.5),
                         "reasons": ["low correlation"]})
    project.set_level("a", "L4-L5")
    case = project.case("a")
    assert case.qc_flags == {"registration_flagged": True, "correlation": 0.5,
                             "reasons": ["low correlation"]}
    assert case.level == "L4-L5"
    va = project.save_labels("a", phantoms["cases"]["a"].labels, "automatic")
    vb = project.save_labels("b", phantoms["cases"]["b"].labels, "automatic")
    mid = project.save_measurements("a", va.id, {"MF_L_csa_mm2": np.float64(812.5), "n": 3})
    assert [(m.id, m.label_version_id, m.row) for m in project.measurements("a")] == [
        (mid, va.id, {"MF_L_csa_mm2": 812.5, "n": 3})]
    with pytest.raises(ProjectError, match="not a version of case"):
        project.save_measurements("a", vb.id, {})
    assert [e[2] for e in project.history("a")] == ["add", "qc", "level", "save", "measure"]


# --------------------------------------------------------------------------- models


def test_model_registry(project: Project, tmp_path: Path) -> None:
    first = project.register_model(make_bundle(tmp_path / "b1", "paraspinal net", "1"))
    assert first == "paraspinal_net-v1" and project.active_model() is None
    second = project.register_model(make_bundle(tmp_path / "b2", "paraspinal net", "2",
                                                parent=first, seed=1), active=True)
    third = project.register_model(make_bundle(tmp_path / "b3", "x", "3", seed=2),
                                   model_id="tuned-3", parent=second, active=True)
    assert project.active_model().id == third
    models = {m.id: m for m in project.models()}
    assert list(models) == [first, second, third]
    assert models[second].parent == first and models[third].parent == second
    assert models[second].card["metrics"] == {"dice": 0.91}
    for m in models.values():
        assert files_under(m.path) == ["atlas", "atlas/notes.md", "card.json",
                                       "weights.safetensors"]
        assert sha256(m.path / "weights.safetensors") == m.weights_sha256
        assert m.card["weights_sha256"] == m.weights_sha256
        assert m.card["files_sha256"] == {NOTES: sha256(m.path / NOTES)}
        state, card = load_bundle(m.path)  # what the project holds loads as a model
        Segmenter.from_dict(card.network).load_state_dict(state)

    project.activate(first)
    assert [m.id for m in project.models() if m.active] == [first]
    project.activate(second)
    assert project.active_model().id == second
    with pytest.raises(sqlite3.IntegrityError):
        project.db.execute("UPDATE models SET active = 1")
    assert sum(m.active for m in project.models()) == 1

    weights_before = sha256(models[third].path / "weights.safetensors")
    with pytest.raises(ProjectError, match="already exists"):
        project.register_model(make_bundle(tmp_path / "b4", "x", "3", seed=9),
                               model_id="tuned-3")
    assert sha256(models[third].path / "weights.safetensors") == weights_before
    with pytest.raises(ProjectError, match="no model"):
        project.activate("nope")

    broken = make_bundle(tmp_path / "b5", "y", "1")
    (broken / "card.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        project.register_model(broken)
    lying = make_bundle(tmp_path / "b6", "y", "1")
    edit_card(lying, weights_sha256="0" * 64)
    with pytest.raises(InputError, match="do not match") as refused:
        project.register_model(lying)
    assert refused.value.source == str(lying)  # the bundle given, not the staging copy
    (lying / "weights.safetensors").unlink()
    with pytest.raises(InputError, match="weights.safetensors is missing"):
        project.register_model(lying)
    assert len(project.models()) == 3 and project.check().clean


@pytest.mark.parametrize("attack", ["no weights hash", "empty weights hash", "hash left out",
                                    "extra file changed", "file not listed", "pickle",
                                    "link out", "bad card field"])
def test_only_bundles_that_load_are_registered(project: Project, tmp_path: Path,
                                               attack: str) -> None:
    """Every file of a bundle is hashed and the hash is required; the card fits the schema;
    the weights are safetensors; nothing of a refused bundle stays in the project."""
    bundle = make_bundle(tmp_path / "bundle", "net", "1")
    expected = {
        "no weights hash": "weights_sha256: is missing",
        "empty weights hash": "weights_sha256: must be the weights' SHA-256",
        "hash left out": "atlas/notes.md: is not listed in card.json files_sha256",
        "extra file changed": "atlas/notes.md: does not match its SHA-256",
        "file not listed": "training_log.csv: is not listed in card.json files_sha256",
        "pickle": "cannot read the weights",
        "link out": "leads out of the folder",
        "bad card field": "network.crf.iterations: must be an integer from 1 to 50",
    }[attack]
    if attack == "no weights hash":
        edit_card(bundle, "weights_sha256")
    elif attack == "empty weights hash":  # once skipped the check: now refused
        edit_card(bundle, weights_sha256="")
    elif attack == "hash left out":
        edit_card(bundle, files_sha256={})
    elif attack == "extra file changed":
        (bundle / NOTES).write_text("changed after the card was written")
    elif attack == "file not listed":
        (bundle / "training_log.csv").write_text("epoch,loss\n1,0.5\n")
    elif attack == "pickle":  # a pickle whose hash the card holds: refused as a format
        pickled = tmp_path / "state.pt"
        torch.save({"w": torch.ones(3)}, pickled)
        (bundle / "weights.safetensors").write_bytes(pickled.read_bytes())
        edit_card(bundle, weights_sha256=sha256(pickled))
    elif attack == "link out":  # same bytes, but read from outside the bundle
        outside = tmp_path / "outside.safetensors"
        outside.write_bytes((bundle / "weights.safetensors").read_bytes())
        (bundle / "weights.safetensors").unlink()
        (bundle / "weights.safetensors").symlink_to(outside)
    else:
        card = json.loads((bundle / "card.json").read_text())
        edit_card(bundle, network={**card["network"], "use_crf": True,
                                   "crf": {"iterations": 10**6}})
    before = snapshot(project)
    with pytest.raises(InputError, match=re.escape(expected)) as refused:
        project.register_model(bundle, active=True)
    assert refused.value.source == str(bundle) and ".stage-" not in str(refused.value)
    assert snapshot(project) == before and project.models() == []
    assert files_under(project.root / "models") == [] and project.check().clean


# --------------------------------------------------------------------------- killed runs

_WORKER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from napari_paraspinal.project import store

    root, mode, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    project = store.Project.open(root)
    rng = np.random.default_rng(0)

    def labels(cid):
        return rng.integers(0, 9, project.case(cid).geometry.shape).astype(np.uint8)

    def pause(tag):
        print(tag, flush=True)
        time.sleep(60)

    if mode == "batch":
        ids = []
        for n, image in enumerate(images):
            ids += project.add([image]).added
            for kind in ("automatic", "corrected", "verified"):
                project.save_labels(ids[-1], labels(ids[-1]), kind, labelled=[5, 6])
            if n == 2:  # a few cases done, most to come: the kill lands mid-batch
                print("started", flush=True)
        while True:
            for cid in ids:
                project.save_labels(cid, labels(cid), "corrected", labelled=[7])
    cid = project.add(images).ids[0]
    if not project.label_versions(cid):  # never automatic over a person's version
        project.save_labels(cid, labels(cid), "automatic")
    if mode == "staged":
        sha = store.sha256_of
        store.sha256_of = lambda path: (sha(path), pause(mode))[0]
    elif mode == "placed":
        place = store.place_new
        store.place_new = lambda src, dst: (place(src, dst), pause(mode))[0]
    elif mode == "uncommitted":
        log = store.Project._log
        def slow_log(self, db, case_id, action, detail=""):
            log(self, db, case_id, action, detail)
            if action == "save":
                pause(mode)
        store.Project._log = slow_log
    print("started", flush=True)
    while True:
        project.save_labels(cid, labels(cid), "corrected")
""")


def _run_and_kill(root: Path, mode: str, images: list[Path], wait_for: str,
                  delay: float) -> None:
    """Start the worker, wait for its line ``wait_for``, wait ``delay`` s, SIGKILL it."""
    proc = subprocess.Popen([sys.executable, "-c", _WORKER, str(root), mode,
                             *map(str, images)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    try:
        out = b""
        while wait_for not in out.decode().splitlines():
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
            assert chunk, f"worker stopped or hung before {wait_for!r}: {proc.stderr.read()}"
            out += chunk
        if delay:
            select.select([], [], [], delay)
        assert proc.poll() is None, f"worker ended early: {proc.stderr.read()}"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _assert_consistent(root: Path) -> Project:
    """Open a killed project: database intact, every row's file present and unchanged."""
    p = Project.open(root)
    assert p.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    report = p.check()
    assert report.ok, report.problems
    for case in p.cases():
        versions = p.label_versions(case.id)
        for v in versions:
            assert v.path.is_file() and sha256(v.path) == v.sha256
        if versions:
            assert case.status == store_module.STATUS_OF_KIND[versions[-1].kind]
            arr, _ = p.latest_labels(case.id)
            assert arr.shape == case.geometry.shape
        else:
            assert case.status == "new"
    return p


@posix_only
def test_killed_in_the_middle_of_a_batch(tmp_path: Path) -> None:
    images = []
    rng = np.random.default_rng(1)
    for n in range(60):
        pixels = rng.normal(100, 20, (48, 40)).astype(np.float32)
        image = SliceImage(pixels, Geometry((48, 40), (0.8, 0.9, 4.0), (n, 0.0, 0.0)))
        images.append(write_image(image, tmp_path / "images" / f"s{n:02d}.nii.gz"))
    root = tmp_path / "proj"
    Project.init(root).close()
    _run_and_kill(root, "batch", images, "started", delay=0.05)
    with _assert_consistent(root) as p:
        assert 1 <= len(p.cases()) < len(images), "killed mid-way through the batch"
        assert sum(len(p.label_versions(c.id)) for c in p.cases()) >= 3
        repaired = p.repair()
        assert repaired.clean, repaired
        added = p.add(images)
        assert not added.failed and len(added.ids) == len(images)
        for cid in added.added:
            p.save_labels(cid, np.zeros((48, 40), np.uint8), "automatic")
        assert p.check().clean


@posix_only
@pytest.mark.parametrize("mode", ["staged", "placed", "uncommitted"])
def test_killed_in_the_middle_of_a_save(tmp_path: Path, phantoms: dict, mode: str) -> None:
    """Killed after the staging file is written, after the version file is placed, and
    after the row is inserted but before the commit: only version 1 stays recorded."""
    root = tmp_path / "proj"
    Project.init(root).close()
    _run_and_kill(root, mode, [phantoms["folder"] / "a.nii.gz"], mode, delay=0)
    with _assert_consistent(root) as p:
        (v1,) = p.label_versions("a")
        assert v1.kind == "automatic" and p.case("a").status == "predicted"
        report = p.check()
        if mode == "staged":
            assert len(report.temp_files) == 1 and report.orphan_files == []
        else:
            assert report.orphan_files == ["labels/a/v002_corrected.nii.gz"]
        repaired = p.repair()
        assert repaired.clean and repaired.repaired
        if mode != "staged":
            assert (root / "orphans").is_dir()
        v2 = p.save_labels("a", phantoms["cases"]["a"].labels, "corrected")
        assert v2.version == 2 and p.check().clean


@posix_only
def test_killed_at_random_in_a_tight_save_loop(tmp_path: Path, phantoms: dict) -> None:
    root = tmp_path / "proj"
    Project.init(root).close()
    for delay in (0.05, 0.37):
        _run_and_kill(root, "loop", [phantoms["folder"] / "a.nii.gz"], "started", delay)
        with _assert_consistent(root) as p:
            assert len(p.label_versions("a")) >= 1
            p.repair()
