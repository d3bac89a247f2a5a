"""``paraspinal run --bids``: the output folder as a BIDS derivatives dataset, checked against
the BIDS rules (entity grammar, sidecars describing every TSV column, the dseg look-up table,
dataset_description.json) and against the inputs' geometry, on real files: phantom slices in
a plain folder and in a BIDS raw dataset, a 3-D stack and a broken file."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from napari_paraspinal import __version__
from napari_paraspinal.bids import BidsDataset
from napari_paraspinal.bids_names import bids_label, parse_source
from napari_paraspinal.bids_tables import column_description, tsv_text
from napari_paraspinal.cli import main
from napari_paraspinal.core.labels import LABELS
from napari_paraspinal.core.writers import write_image, write_labels
from napari_paraspinal.jobs import Cancel, Progress
from napari_paraspinal.phantom import generate_phantom
from napari_paraspinal.pipeline import RunConfig
from napari_paraspinal.run_batch import run
from napari_paraspinal.segment import default_model_path

BIDS_NAME = "sub-01_ses-02_acq-axial_run-1_T2w.nii.gz"
RAW_REL = f"sub-01/ses-02/anat/{BIDS_NAME}"
DOI = "doi:10.5555/raw-dataset"
#: BIDS entity order (specification appendix) of the entities a segmentation may carry.
ORDER = ["sub", "ses", "task", "acq", "ce", "rec", "run", "echo", "part", "chunk", "space",
         "seg", "res", "desc"]
#: The derivative file grammar: sub-<label>/[ses-<label>/]anat/<entities>_<suffix>.<ext>.
GRAMMAR = re.compile(r"^sub-(?P<sub>[0-9A-Za-z]+)/(?:ses-(?P<ses>[0-9A-Za-z]+)/)?anat/"
                     r"(?P<entities>sub-[0-9A-Za-z]+(?:_[a-z]+-[0-9A-Za-z]+)*)"
                     r"_(?P<suffix>dseg|morph)\.(?P<ext>nii\.gz|json|tsv)$")
ROOT_FILES = {"dataset_description.json", "dseg.tsv", "dseg.json", "README.md", ".bidsignore"}


def write_stack(image: Path, labels: Path, n: int = 6) -> None:
    """A 3-D stack of ``n`` slices (a phantom slice, brighter slice by slice) with its label
    volume, written with SimpleITK like a scanner's NIfTI volume."""
    case = generate_phantom(702)
    sx, sy = case.image.geometry.spacing[:2]
    volume = np.stack([case.image.data * (1 + 0.05 * k) for k in range(n)]).astype(np.float32)
    for data, path in ((volume, image), (np.repeat(case.labels[None], n, 0).astype(np.uint8),
                                         labels / image.name)):
        img = sitk.GetImageFromArray(data)
        img.SetSpacing((sx, sy, 4.0))
        img.SetOrigin((-80.0, -60.0, 12.5))
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(img, str(path))


def phantom(seed: int, image: Path, labels: Path) -> None:
    case = generate_phantom(seed)
    image.parent.mkdir(parents=True, exist_ok=True)
    write_image(case.image, image)
    write_labels(case.labels, case.image.geometry, labels / image.name)


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``--bids`` run over a BIDS raw input, a plain one, a stack and a broken file."""
    root = tmp_path_factory.mktemp("bids")
    raw, plain, labels = root / "raw", root / "plain", root / "labels"
    labels.mkdir()
    raw.mkdir()
    (raw / "dataset_description.json").write_text(json.dumps(
        {"Name": "raw", "BIDSVersion": "1.10.0", "DatasetDOI": DOI}))
    phantom(700, raw / RAW_REL, labels)
    phantom(701, plain / "Case_07-b.nii.gz", labels)
    (plain / "broken.nii.gz").write_bytes((plain / "Case_07-b.nii.gz").read_bytes()[:200])
    write_stack(root / "stack" / "spine.nii.gz", labels)
    out = raw / "derivatives" / "paraspinal"
    code = main(["run", str(raw / RAW_REL), str(plain), str(root / "stack"),
                 "--labels", str(labels), "--out", str(out), "--bids", "--no-n4",
                 "--no-overlays", "--quiet"])
    cases = {"bids": (raw / RAW_REL, "sub-01/ses-02/anat/sub-01_ses-02_acq-axial_run-1"),
             "plain": (plain / "Case_07-b.nii.gz", "sub-Case07b/anat/sub-Case07b"),
             "stack": (root / "stack" / "spine.nii.gz", "sub-spine/anat/sub-spine")}
    return {"code": code, "out": out, "raw": raw, "labels": labels, "cases": cases}


def bids_files(out: Path) -> list[str]:
    """Every file of the dataset that .bidsignore does not leave out."""
    ignored = [p.rstrip("/") for p in (out / ".bidsignore").read_text().split()]
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
                  and p.relative_to(out).parts[0] not in ignored)


def test_parse_source_and_labels(tmp_path: Path) -> None:
    src = parse_source(tmp_path / "ds" / RAW_REL)
    assert src is not None and src.suffix == "T2w"
    assert src.entities == {"sub": "01", "ses": "02", "acq": "axial", "run": "1"}
    assert src.root == tmp_path / "ds" and src.relpath == RAW_REL
    flat = parse_source(tmp_path / BIDS_NAME)  # a BIDS name outside a BIDS folder tree
    assert flat is not None and flat.root is None and flat.entities["ses"] == "02"
    assert parse_source(tmp_path / "sub-01" / "anat" / "sub-02_T2w.nii.gz").root is None
    assert parse_source(tmp_path / "sub-01_acq-a_acq-b_T2w.nii.gz") is None  # acq twice
    assert parse_source(tmp_path / "Case_07-b.nii.gz") is None
    assert bids_label("Case_07-b") == "Case07b" and bids_label("_-_") == "case"


def test_case_names_are_unique_bids_names(tmp_path: Path) -> None:
    ds = BidsDataset(tmp_path, [tmp_path / "raw" / RAW_REL])
    first = ds.case_files("t2", [tmp_path / "raw" / RAW_REL])
    same = ds.case_files("t1", [tmp_path / "raw" / RAW_REL.replace("T2w", "T1w")])
    a, b = ds.case_files("x_1", [tmp_path / "x_1.nii.gz"]), ds.case_files("X-1", [])
    assert first.stem == "sub-01_ses-02_acq-axial_run-1"
    assert same.stem == "sub-01_ses-02_acq-axial_run-1_desc-t1"
    assert (a.stem, b.stem) == ("sub-x1", "sub-X1_desc-X1")  # unique ignoring case
    assert first.sources == (f"bids:raw:{RAW_REL}",) and a.sources == ()
    for files in (first, same, a, b):
        for path in files.all:
            assert GRAMMAR.match(path.relative_to(tmp_path).as_posix()), path


def test_run_writes_a_bids_derivatives_dataset(done: dict) -> None:
    out = done["out"]
    assert done["code"] == 1  # the broken input failed, the others were done
    names = bids_files(out)
    cases = [stem for _, stem in done["cases"].values()]
    assert names == sorted(ROOT_FILES | {f"{s}_{x}" for s in cases for x in (
        "dseg.nii.gz", "dseg.json", "morph.tsv", "morph.json")})
    for name in names:
        if name in ROOT_FILES:
            continue
        m = GRAMMAR.match(name)
        assert m, name
        entities = [e.split("-", 1) for e in m["entities"].split("_")]
        keys = [k for k, _ in entities]
        assert keys[0] == "sub" and entities[0][1] == m["sub"]
        assert ("ses" in keys) == (m["ses"] is not None)
        if m["ses"]:
            assert keys[1] == "ses" and entities[1][1] == m["ses"]
        assert all(k in ORDER for k in keys) and keys == sorted(keys, key=ORDER.index)
        assert "space" not in keys  # on the input's own grid
    # the run's own files are left out of the dataset by .bidsignore, and nothing else
    ignored = set((out / ".bidsignore").read_text().split())
    assert {"labels/", "measurements.csv", "measurements.xlsx", "run.json"} <= ignored
    assert not any(n.startswith(("sub-", "dseg", "dataset_")) for n in ignored)


def test_dseg_table_and_images(done: dict) -> None:
    out = done["out"]
    header, rows = read_tsv(out / "dseg.tsv")
    assert header == ["index", "name", "abbreviation", "color"]
    table = {int(r[0]): r for r in rows}
    assert table[0][2] == "BG"
    for lab in LABELS:
        assert table[lab.value][1:] == [lab.name, lab.short,
                                        "#{:02x}{:02x}{:02x}".format(*lab.color)]
    assert sorted(table) == list(range(9))
    for image, stem in done["cases"].values():
        dseg = nib.load(out / f"{stem}_dseg.nii.gz")
        source = nib.load(image)
        assert dseg.get_data_dtype().kind in "iu"
        assert dseg.shape == source.shape
        np.testing.assert_allclose(dseg.affine, source.affine, atol=1e-5)
        data = np.asarray(dseg.dataobj)
        given = np.asarray(nib.load(done["labels"] / image.name).dataobj)
        assert np.array_equal(data, given)
        assert set(np.unique(data).tolist()) <= set(table) and data.max() > 0
    side = json.loads((out / f"{done['cases']['bids'][1]}_dseg.json").read_text())
    assert side["Sources"] == [f"bids:raw:{RAW_REL}"] == [side["SpatialReference"]]
    assert (done["raw"] / RAW_REL).is_file()
    plain = json.loads((out / f"{done['cases']['plain'][1]}_dseg.json").read_text())
    assert plain["SpatialReference"] == "orig" and "Sources" not in plain


def test_every_tsv_column_is_described(done: dict) -> None:
    out = done["out"]
    tables = [out / "dseg.tsv", *sorted(out.glob("sub-*/**/*_morph.tsv"))]
    assert len(tables) == 4
    for tsv in tables:
        header, rows = read_tsv(tsv)
        side = json.loads(tsv.with_suffix(".json").read_text())
        for column in header:
            assert isinstance(side.get(column), dict) and side[column]["Description"], column
        assert rows and all(len(r) == len(header) for r in rows)
        assert all(cell for r in rows for cell in r)  # missing values are n/a
        if tsv.name.endswith("_morph.tsv"):
            assert all(column_description(c) is not None for c in header), tsv
            assert side["MF_L_csa_mm2"]["Units"] == "mm^2"
            assert side["ES_R_fat_pct"]["Units"] == "%"
            assert side["slice_position_mm"]["Units"] == "mm"
            assert side["SoftwareName"] == "napari-paraspinal"
            assert side["SoftwareVersion"] == __version__
            assert side["Method"]["LabelStatus"] == "given"
            assert side["Method"]["FatSeparation"]["method"] == "calibrated"
    # the stack's table holds its rows of measurements.csv, the same numbers
    csv_rows = [r for r in csv.DictReader((out / "measurements.csv").open())
                if r["case"] == "spine"]
    header, rows = read_tsv(out / f"{done['cases']['stack'][1]}_morph.tsv")
    assert len(rows) == len(csv_rows) == 6
    for column in ("slice", "MF_L_csa_mm2", "ES_R_fat_pct"):
        got = [float(r[header.index(column)]) for r in rows]
        assert got == [float(r[column]) for r in csv_rows]


def test_tsv_cells() -> None:
    rows = [{"a": True, "b": None, "c": float("nan"), "d": "x\ty\nz", "e": "=1+1",
             "f": np.bool_(False), "g": 2.5, "h": np.int64(3), "i": ""}]
    assert tsv_text(rows) == "a\tb\tc\td\te\tf\tg\th\ti\n" \
                             "true\tn/a\tn/a\tx y z\t'=1+1\tfalse\t2.5\t3\tn/a\n"


def test_dataset_description(done: dict) -> None:
    out = done["out"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert isinstance(desc["Name"], str) and desc["Name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", desc["BIDSVersion"])
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0] == {**desc["GeneratedBy"][0], "Name": "napari-paraspinal",
                                      "Version": __version__}
    assert desc["SourceDatasets"] == [{"URL": "../..", "DOI": DOI}]
    assert desc["DatasetLinks"] == {"raw": "../.."}
    assert (out / desc["DatasetLinks"]["raw"]).resolve() == done["raw"].resolve()
    manifest = json.loads((out / "run.json").read_text())
    assert set(manifest["files"]) == ROOT_FILES
    outputs = {c: set(e["outputs"]) for c, e in manifest["cases"].items()}
    assert outputs["broken"] == set()  # a failed case leaves no files
    assert f"{done['cases']['stack'][1]}_dseg.nii.gz" in outputs["spine"]
    assert not list(out.glob("sub-broken*"))


def test_paths_pass_the_bids_schema(done: dict) -> None:
    """The schema of the ``bids-validator`` package: its file rules for raw and derivative
    datasets, the dseg look-up table's columns and dataset_description.json's keys."""
    pytest.importorskip("bids_validator")
    import bidsschematools.rules
    import bidsschematools.schema
    from bids_validator import BIDSValidator

    schema = bidsschematools.schema.load_schema()
    rules = [r["regex"] for group in (schema.rules.files.common, schema.rules.files.deriv)
             for r in bidsschematools.rules.regexify_filename_rules(group, schema, level=2)]

    def valid(name: str) -> bool:
        return any(re.match(rule, name) for rule in rules)

    assert BIDSValidator().is_bids("/" + RAW_REL)  # the input really is BIDS raw
    assert not valid("sub-01/ses-02/anat/sub-01_dseg.nii.gz")  # session missing from name
    checked = [n for n in bids_files(done["out"]) if "_morph." not in n and n != ".bidsignore"]
    assert len(checked) == 4 + 3 * 2
    for name in checked:
        assert valid(name), name
    lookup = schema.rules.tabular_data.derivatives.common_derivatives.SegmentationLookup
    allowed = {schema.objects.columns[k].name: v for k, v in lookup.columns.items()}
    header, _ = read_tsv(done["out"] / "dseg.tsv")
    assert set(header) <= set(allowed)
    assert {c for c, level in allowed.items() if level == "required"} <= set(header)
    desc = json.loads((done["out"] / "dataset_description.json").read_text())
    need = schema.rules.json.dataset
    for rule in (need.dataset_description, need.derivative_description):
        for key, level in rule.fields.items():
            if (level if isinstance(level, str) else level["level"]) == "required":
                assert key in desc, key


def test_killed_run_keeps_finished_cases_and_rerun_moves_them_aside(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    for seed in (710, 711):
        phantom(seed, tmp_path / "in" / f"p{seed}.nii.gz", labels)
    out = tmp_path / "in" / "derivatives" / "paraspinal"  # inside the inputs' folder
    config = RunConfig(out_dir=out, labels_dir=labels, overlays=False, n4=None, bids=True)

    def kill(event: Progress) -> None:
        if event.done == 2:  # inside the second case
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run([tmp_path / "in"], config, progress=kill, cancel=Cancel())
    assert (out / "sub-p710/anat/sub-p710_dseg.nii.gz").is_file()
    assert (out / "sub-p710/anat/sub-p710_morph.tsv").is_file()
    assert not (out / "sub-p711").exists()
    assert (out / "dataset_description.json").is_file()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["cases"]["p710"]["status"] == "ok"
    assert "sub-p710/anat/sub-p710_morph.tsv" in manifest["cases"]["p710"]["outputs"]
    assert manifest["cases"]["p711"]["status"] == "running"
    assert [r["case"] for r in csv.DictReader((out / "measurements.csv").open())] == ["p710"]

    # a run without --bids reads no earlier label map as an input and moves the earlier
    # dataset aside: nothing stale beside the new results
    results = run([tmp_path / "in"], RunConfig(out_dir=out, labels_dir=labels,
                                               overlays=False, n4=None))
    assert [(r.case, r.status) for r in results] == [("p710", "ok"), ("p711", "ok")]
    moved = out / "superseded" / manifest["run_id"]
    assert (moved / "dataset_description.json").is_file()
    assert (moved / "sub-p710/anat/sub-p710_dseg.nii.gz").is_file()
    assert not (out / "dataset_description.json").exists()
    assert not list(out.glob("sub-*/**/*.*"))


@pytest.mark.skipif(not default_model_path().is_dir(), reason="no shipped model")
def test_model_labels_are_marked_automatic(tmp_path: Path) -> None:
    image = tmp_path / "raw" / RAW_REL
    phantom(720, image, tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(image), "--out", str(out), "--bids", "--no-overlays",
                 "--quiet"]) == 0
    stem = out / "sub-01/ses-02/anat/sub-01_ses-02_acq-axial_run-1"
    side = json.loads(stem.with_name(stem.name + "_dseg.json").read_text())
    assert side["Manual"] is False
    morph = json.loads(stem.with_name(stem.name + "_morph.json").read_text())
    card = json.loads((default_model_path() / "card.json").read_text())
    assert morph["Method"]["LabelStatus"] == "automatic"
    assert morph["Method"]["Model"]["WeightsSHA256"] == card["weights_sha256"]
    header, _ = read_tsv(stem.with_name(stem.name + "_morph.tsv"))
    assert "registration_flagged" in header  # the model's QC columns, described too
    assert all(column_description(c) == morph[c] for c in header)
