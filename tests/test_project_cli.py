"""The project workflow on the command line: init, add, segment, correct, export, stats, agree.

Phantoms are segmented by the shipped model, one case is "corrected" with its true labels
(only MF and ES vouched for), the project is exported and the spreadsheet is read back (with
openpyxl, and with LibreOffice when installed); the automatic and corrected exports are then
compared by ``paraspinal agree``, and ``paraspinal stats`` relates them to age and sex.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook

from napari_paraspinal.cli import main
from napari_paraspinal.core.io import read_labels
from napari_paraspinal.project.store import Project

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_project")
    data, proj = root / "data", root / "project"
    assert main(["phantom", str(data), "--n", "4", "--seed", "4242", "--level", "both"]) == 0
    assert main(["project", "init", str(proj)]) == 0
    assert main(["project", "add", str(proj), str(data / "images")]) == 0
    assert main(["project", "segment", str(proj)]) == 0
    return proj


def test_segment_records_versions_model_and_qc(project: Path, capsys) -> None:
    with Project.open(project) as p:
        counts = p.status_counts()
        assert counts["predicted"] == 4 and counts["new"] == 0
        active = p.active_model()
        assert active is not None and active.id.startswith("paraspinal-synth")
        for case in p.cases():
            version = p.latest_version(case.id)
            assert version.kind == "automatic" and version.model_id == active.id
            assert case.level is None  # the body frame knows no level: none is stored
            assert "registration_flagged" in case.qc_flags
            assert p.measurements(case.id)
            assert 0.0 < case.uncertainty < 1.0  # the segmentation's score, stored
        scores = {c.id: c.uncertainty for c in p.cases()}
    # nothing new: a second run segments nothing and leaves the versions alone
    assert main(["project", "segment", str(project)]) == 0
    assert "0 segmented" in capsys.readouterr().out
    assert main(["project", "next", str(project), "--by", "uncertainty"]) == 0
    assert capsys.readouterr().out.strip() == max(scores, key=scores.get)


def test_correct_export_and_spreadsheet(project: Path, tmp_path: Path) -> None:
    data = project.parent / "data"
    with Project.open(project) as p:
        case = p.cases()[0]
    truth = data / "labels" / Path(case.source).name
    assert main(["project", "correct", str(project), case.id, str(truth),
                 "--labelled", "5,6,7,8"]) == 0
    with Project.open(project) as p:
        row = p.case(case.id)
        assert row.status == "corrected" and row.verified_labels == [5, 6, 7, 8]
        labels, version = p.latest_labels(case.id)
        assert version.version == 2
        assert np.array_equal(labels, read_labels(truth, row.geometry))
        assert p.label_versions(case.id)[0].kind == "automatic"  # never overwritten
        changed = int((labels != p.read_version(p.label_versions(case.id)[0])).sum())
    out = tmp_path / "export.xlsx"
    assert main(["export", str(project), "--out", str(out)]) == 0
    wb = load_workbook(out)
    rows = list(wb["measurements"].iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    assert len(body) == 4
    col = {name: k for k, name in enumerate(header)}
    by_case = {r[col["case"]]: r for r in body}
    corrected = by_case[case.id]
    assert corrected[col["label_status"]] == "corrected"
    assert corrected[col["edit_pixels"]] == changed > 0  # the correction's pixels, counted
    assert all(0 < r[col["uncertainty"]] < 1 for r in body)
    # the corrected case is measured on the true labels: exact areas
    g = row.geometry
    true_mf = float((labels == 5).sum()) * g.pixel_area_mm2
    assert corrected[col["MF_L_csa_mm2"]] == pytest.approx(true_mf, rel=1e-5)
    assert isinstance(corrected[col["MF_L_fat_pct"]], float)
    prov = list(wb["provenance"].iter_rows(values_only=True))
    pcol = {name: k for k, name in enumerate(prov[0])}
    kinds = {r[pcol["case"]]: r[pcol["label_status"]] for r in prov[1:]}
    assert kinds[case.id] == "corrected" and list(kinds.values()).count("automatic") == 3
    assert all(len(r[pcol["labels_sha256"]]) == 64 for r in prov[1:])
    assert (tmp_path / "export.csv").is_file()
    if SOFFICE is None:
        pytest.skip("LibreOffice is not installed (.ci/run installs libreoffice-calc-nogui)")
    converted = tmp_path / "converted"
    subprocess.run([SOFFICE, "--headless", f"-env:UserInstallation=file://{tmp_path}/lo",
                    "--convert-to", "csv", "--outdir", str(converted), str(out)],
                   check=True, capture_output=True, timeout=120)
    office = {r["case"]: r for r in csv.DictReader((converted / "export.csv").open())}
    assert float(office[case.id]["MF_L_csa_mm2"]) == pytest.approx(true_mf, rel=1e-5)


def test_agree_and_stats_on_exports(project: Path, tmp_path: Path) -> None:
    auto, corrected = tmp_path / "auto.csv", tmp_path / "corrected.csv"
    with Project.open(project) as p:
        ids = [c.id for c in p.cases()]
    assert main(["export", str(project), "--out", str(tmp_path / "now.xlsx")]) == 0
    rows = list(csv.DictReader((tmp_path / "now.csv").open()))
    # the first table: the same cases measured by the model alone (version 1 of each)
    with Project.open(project) as p:
        from napari_paraspinal.measure import measure_slice
        from napari_paraspinal.preprocess.n4 import N4Config

        auto_rows = []
        for cid in ids:
            version = p.label_versions(cid)[0]
            measured = measure_slice(p.read_image(cid), p.read_version(version), n4=N4Config())
            auto_rows.append({"case": cid, **measured.row})
    from napari_paraspinal.export import write_csv

    write_csv(auto_rows, auto)
    write_csv(rows, corrected)
    assert main(["agree", str(auto), str(corrected), "--out", str(tmp_path / "agree")]) == 0
    table = {r["measure"]: r for r in csv.DictReader((tmp_path / "agree" /
                                                       "agreement.csv").open())}
    assert int(float(table["MF_L_csa_mm2"]["n"])) == 4
    assert (tmp_path / "agree" / "agreement.png").stat().st_size > 1000
    covariates = tmp_path / "covariates.csv"
    covariates.write_text("case,age,sex\n" + "".join(
        f"{cid},{40 + 7 * k},{'MF'[k % 2]}\n" for k, cid in enumerate(ids)))
    assert main(["stats", str(corrected), "--covariates", str(covariates),
                 "--out", str(tmp_path / "stats")]) == 0
    stats = list(csv.DictReader((tmp_path / "stats" / "cohort_stats.csv").open()))
    assert {r["measure"] for r in stats} >= {"MF_L_csa_mm2", "ES_R_fat_pct"}
    assert all(int(float(r["n"])) == 4 for r in stats)


def test_project_errors_are_clear(tmp_path: Path, capsys) -> None:
    assert main(["project", "status", str(tmp_path / "nowhere")]) == 2
    assert "project" in capsys.readouterr().err
    assert main(["project", "init", str(tmp_path / "p")]) == 0
    assert main(["export", str(tmp_path / "p"), "--out", str(tmp_path / "x.xlsx")]) == 2
    assert "no case has labels" in capsys.readouterr().err


def test_finetune_needs_enough_corrected_cases(project: Path, capsys) -> None:
    # one corrected case cannot be split into training and held-out cases: a clear refusal,
    # the active model untouched (the full fine-tuning path is tested in test_finetune)
    with Project.open(project) as p:
        active = p.active_model().id
    assert main(["finetune", str(project), "--epochs", "1", "--quiet"]) == 2
    assert "case" in capsys.readouterr().err
    with Project.open(project) as p:
        assert p.active_model().id == active and len(p.models()) == 1
