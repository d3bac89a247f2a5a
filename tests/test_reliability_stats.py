"""Reliability of ``paraspinal stats`` / ``agree`` on awkward real-world tables: CSV quoting and
delimiters, tiny cohorts, partly matching case ids and implausible covariates. Every table is
a real file written in tmp_path and read back through the public entry points."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook

import napari_paraspinal.stats as stats_api
from napari_paraspinal import (
    stats_analysis,
    stats_methods,
    stats_read,
    stats_report,
    stats_table,
)
from napari_paraspinal.cli import main
from napari_paraspinal.export import write_csv, write_xlsx
from napari_paraspinal.stats import (
    MIN_COHORT_CASES,
    MIN_PER_SEX,
    P_FLOOR,
    agreement,
    agreement_analysis,
    cohort_analysis,
    cohort_stats,
    covariates_by_case,
    partial_spearman,
    read_table,
    run_agreement,
    run_stats,
)


def _text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _cohort(n: int, seed: int = 1, ids: str = "case{:03d}") -> tuple[list[dict], list[dict]]:
    """Fat % rising with age, alternating sex; ids ``case001``, ``case002``, ..."""
    rng = np.random.default_rng(seed)
    measures, covariates = [], []
    for i in range(n):
        age = 20.0 + 1.5 * i
        measures.append({"case": ids.format(i + 1),
                         "MF_L_fat_pct": round(0.3 * age + rng.normal(0, 1.5), 3),
                         "MF_L_csa_mm2": round(900 + rng.normal(0, 80), 3)})
        covariates.append({"case": ids.format(i + 1), "age": age, "sex": "MF"[i % 2]})
    return measures, covariates


# --- 12: CSV quoting and delimiters -----------------------------------------------------------

QUOTED_A = (
    "case,note,MF_L_csa_mm2,MF_L_fat_pct\n"
    'c1,"said ""redo"", later",542.8,10.5\n'
    "c2,ok,500.0,12.0\n"
    'c3,"x, y",610.0,8.0\n'
    'c4,"",480.0,9.5\n'
    'c5,"two\nlines",520.0,11.0\n'
)


def test_doubled_quote_inside_quoted_field_keeps_every_column(tmp_path: Path) -> None:
    a = _text(tmp_path / "a.csv", QUOTED_A)
    rows = read_table(a)
    assert rows[0] == {"case": "c1", "note": 'said "redo", later', "MF_L_csa_mm2": 542.8,
                       "MF_L_fat_pct": 10.5}
    assert [r["MF_L_csa_mm2"] for r in rows] == [542.8, 500.0, 610.0, 480.0, 520.0]
    assert rows[2]["note"] == "x, y" and rows[4]["note"] == "two\nlines"
    b = write_csv([r | {"MF_L_csa_mm2": r["MF_L_csa_mm2"] + 2.0} for r in rows],
                  tmp_path / "b.csv")
    paths = run_agreement(a, b, tmp_path / "out")
    out = {r["measure"]: r for r in read_table(paths["csv"])}
    csa = out["MF_L_csa_mm2"]
    assert csa["n"] == 5
    assert csa["mean_a"] == pytest.approx(np.mean([542.8, 500.0, 610.0, 480.0, 520.0]))
    assert csa["bias"] == pytest.approx(2.0)
    assert out["MF_L_fat_pct"]["bias"] == pytest.approx(0.0, abs=1e-12)


def test_doubled_quote_in_covariates_gives_no_false_non_numeric_age(tmp_path: Path) -> None:
    measures, covariates = _cohort(12)
    lines = ["case,comment,age,sex"]
    for i, c in enumerate(covariates):
        comment = '"said ""no"", then yes"' if i == 3 else "fine"
        lines.append(f"{c['case']},{comment},{c['age']},{c['sex']}")
    cpath = _text(tmp_path / "c.csv", "\n".join(lines) + "\n")
    cov = covariates_by_case(read_table(cpath), str(cpath))
    assert cov["case004"] == (covariates[3]["age"], 0.0)  # "F"
    paths = run_stats(write_csv(measures, tmp_path / "m.csv"), cpath, tmp_path / "out")
    assert all(r["n"] == 12 for r in read_table(paths["csv"]))


@pytest.mark.parametrize(("body", "line", "why"), [
    ("c1,said hi, ok,542.8\nc2,plain,500\n", 2, "4 fields but the header has 3"),
    ("c1,plain,500\nc2,542.8\n", 3, "2 fields but the header has 3"),
    ('c1,plain,500\nc2,"say "hi" ok",542.8\n', 3, "expected after"),
])
def test_row_that_does_not_fit_the_header_is_refused_with_its_line(
        tmp_path: Path, body: str, line: int, why: str) -> None:
    path = _text(tmp_path / "bad.csv", "case,note,MF_L_csa_mm2\n" + body)
    with pytest.raises(ValueError) as info:
        read_table(path)
    message = str(info.value)
    assert str(path) in message and f"line {line}" in message and why in message
    assert "Nothing was read" in message


def test_cli_refuses_a_misfit_row_with_its_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    a = _text(tmp_path / "a.csv", "case,note,MF_L_csa_mm2\nc1,a,1\nc2,b, c,2\n")
    assert main(["agree", str(a), str(a), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "line 3 has 4 fields but the header has 3" in err
    assert not (tmp_path / "out").exists()


def test_semicolon_csv_with_decimal_commas_and_quoted_semicolons(tmp_path: Path) -> None:
    text = ("case;note;MF_L_fat_pct;MF_L_csa_mm2;age\n"
            'c1;"a; b";12,5;1000;40\n'
            "c2;x, y;7;-3,25;41,5\n"
            'c3;"say ""hi""";;812,125;n/a\n')
    rows = read_table(_text(tmp_path / "semi.csv", text))
    assert rows == [
        {"case": "c1", "note": "a; b", "MF_L_fat_pct": 12.5, "MF_L_csa_mm2": 1000.0,
         "age": 40.0},
        {"case": "c2", "note": "x, y", "MF_L_fat_pct": 7.0, "MF_L_csa_mm2": -3.25,
         "age": 41.5},
        {"case": "c3", "note": 'say "hi"', "MF_L_fat_pct": None, "MF_L_csa_mm2": 812.125,
         "age": None},
    ]
    # a comma file keeps "12,5" as text (it is not a number there) and says so
    comma = _text(tmp_path / "comma.csv", 'case,MF_L_fat_pct\nc1,"12,5"\n')
    with pytest.raises(ValueError, match=r"comma\.csv.*'MF_L_fat_pct'.*'12,5'.*line 2"):
        cohort_stats(read_table(comma), [{"case": "c1", "age": 40, "sex": "M"}],
                     sources=(str(comma), "c"))


def test_tab_separated_file(tmp_path: Path) -> None:
    rows = read_table(_text(tmp_path / "t.tsv", "case\tnote\tage\nc1\ta, b; c\t33\n"))
    assert rows == [{"case": "c1", "note": "a, b; c", "age": 33.0}]


def test_csv_that_is_not_utf8_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("case,note\nc1,Müller\n".encode("cp1252"))
    with pytest.raises(ValueError, match=r"latin\.csv: not UTF-8.*CSV UTF-8"):
        read_table(path)


# --- 13: small cohorts and p-values -----------------------------------------------------------


def test_four_cases_are_not_tested_and_no_p_is_zero(tmp_path: Path) -> None:
    # 23 measures, each a perfect ranking against age: the t approximation would give p = 0
    measures, covariates = [], []
    for i in range(4):
        row: dict = {"case": f"c{i}"}
        for j in range(23):
            row[f"MF_L_m{j:02d}_pct"] = float((i + 1) * (j + 1) * (1 if j % 2 else -1))
        measures.append(row)
        covariates.append({"case": f"c{i}", "age": 30.0 + 10 * i, "sex": "MF"[i % 2]})
    paths = run_stats(write_csv(measures, tmp_path / "m.csv"),
                      write_csv(covariates, tmp_path / "c.csv"), tmp_path / "out")
    rows = read_table(paths["csv"])
    assert len(rows) == 23
    for r in rows:
        assert r["n"] == 4
        for key in ("rho_age", "p_age", "q_age", "rho_sex", "p_sex", "q_sex"):
            assert r[key] is None, (r["measure"], key)
        assert f"fewer than {MIN_COHORT_CASES} complete cases" in r["note"]
    md = paths["md"].read_text()
    assert "## Warnings" in md
    assert f"23 of 23 measures have fewer than {MIN_COHORT_CASES} complete cases" in md
    assert "(n = 4)" in md


def test_perfect_or_underflowing_correlation_reports_the_bound_not_zero(
        tmp_path: Path) -> None:
    x = np.arange(300, dtype=float)
    y = x.copy()
    y[[10, 11]] = y[[11, 10]]  # rho = 1 - 4e-7: the t tail underflows to 0.0
    rho, p, n = partial_spearman(x, y)
    assert n == 300 and 0.999 < rho < 1 and p == P_FLOOR > 0
    rho, p, _ = partial_spearman(x[:12], x[:12])
    assert rho == pytest.approx(1.0) and p == P_FLOOR
    measures, covariates = _cohort(12)
    for m, c in zip(measures, covariates, strict=True):
        m["ES_L_fat_pct"] = 0.5 * c["age"]  # derived from age by mistake
    paths = run_stats(write_csv(measures, tmp_path / "m.csv"),
                      write_csv(covariates, tmp_path / "c.csv"), tmp_path / "out")
    rows = {r["measure"]: r for r in read_table(paths["csv"])}
    es = rows["ES_L_fat_pct"]
    assert es["rho_age"] == pytest.approx(1.0) and 0 < es["p_age"] <= P_FLOOR
    assert 0 < es["q_age"] and "perfect rank correlation" in es["note"]
    assert all(r[k] is None or r[k] > 0 for r in rows.values() for k in ("p_age", "q_age"))
    md = paths["md"].read_text()
    assert "| < 2.2e-308 |" in md and "| 0 |" not in md


def test_sex_test_needs_enough_of_each_sex() -> None:
    measures, covariates = _cohort(14)
    for i, c in enumerate(covariates):
        c["sex"] = "M" if i in (1, 5, 9) else "F"  # 3 men, 11 women
    result = cohort_analysis(measures, covariates)
    fat = {r["measure"]: r for r in result.rows}["MF_L_fat_pct"]
    assert (fat["n"], fat["n_female"], fat["n_male"]) == (14, 11, 3)
    assert math.isnan(fat["p_sex"]) and math.isnan(fat["q_sex"])
    assert f"fewer than {MIN_PER_SEX} of one sex (11 female, 3 male)" in fat["note"]
    assert fat["rho_age"] > 0.5 and 0 < fat["p_age"] < 0.01  # the age test still runs
    assert any("sex test not run for 2 measures" in w for w in result.warnings)
    assert any("small sample" in w and "(n = 14)" in w for w in result.warnings)


def test_large_fully_matched_cohort_has_no_warnings() -> None:
    measures, covariates = _cohort(40)
    result = cohort_analysis(measures, covariates)
    assert result.warnings == []
    assert all(r["note"] == "" and r["n"] == 40 for r in result.rows)


# --- 13: partly matching case ids -------------------------------------------------------------


def test_partly_matching_covariate_ids_are_listed_and_counted(tmp_path: Path) -> None:
    measures, covariates = _cohort(20)
    for c in covariates[10:]:
        c["case"] = "Case-" + str(int(c["case"][4:]))  # case011 -> Case-11
    m = write_csv(measures, tmp_path / "m.csv")
    c = write_csv(covariates, tmp_path / "c.csv")
    paths = run_stats(m, c, tmp_path / "out")
    assert all(r["n"] == 10 for r in read_table(paths["csv"]))
    md = paths["md"].read_text()
    assert f"10 of 20 cases of {m} have no row in {c} and are left out" in md
    assert "'case011'" in md and "'case020'" in md
    assert "10 of 20 case ids of" in md and "'Case-11'" in md
    assert "'case011' ~ 'Case-11'" in md  # the near miss is pointed out, not joined
    wb = load_workbook(paths["xlsx"], read_only=True)
    about = [row for row in wb["about"].iter_rows(values_only=True) if row[0] == "warning"]
    wb.close()
    assert any("left out" in str(row[1]) for row in about)


def test_cli_prints_the_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    measures, covariates = _cohort(20)
    m = write_csv(measures, tmp_path / "m.csv")
    c = write_csv(covariates[:15], tmp_path / "c.csv")
    assert main(["stats", str(m), "--covariates", str(c), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "## Warnings" in out and "5 of 20 cases of" in out and "'case016'" in out


def test_agreement_names_cases_found_in_one_table_only() -> None:
    measures, _ = _cohort(12)
    other = [r | {"case": r["case"].upper()} if i >= 9 else dict(r)
             for i, r in enumerate(measures)]
    result = agreement_analysis(measures, other, sources=("auto.csv", "manual.csv"))
    assert all(r["n"] == 9 for r in result.rows)
    assert any("3 of 12 cases of auto.csv have no row in manual.csv and are left out" in w
               and "'case010'" in w for w in result.warnings)
    assert any("match no case of auto.csv and are left out" in w and "'CASE012'" in w
               for w in result.warnings)
    assert any("'case010' ~ 'CASE010'" in w for w in result.warnings)
    assert agreement(measures, other) == result.rows


def test_no_case_in_common_lists_some_ids_of_each_table() -> None:
    measures, covariates = _cohort(5)
    with pytest.raises(ValueError, match=r"no case.*'case001'.*'sub-1'"):
        cohort_stats(measures, [c | {"case": f"sub-{i + 1}"} for i, c in enumerate(covariates)])


# --- 16: implausible covariates ---------------------------------------------------------------


def test_implausible_ages_are_refused_with_file_line_and_value(tmp_path: Path) -> None:
    measures, covariates = _cohort(12)
    covariates[1]["age"] = -5
    covariates[4]["age"] = 999
    covariates[6]["age"] = 0  # the bounds are inclusive
    covariates[7]["age"] = 120
    c = write_csv(covariates, tmp_path / "c.csv")
    with pytest.raises(ValueError) as info:
        run_stats(write_csv(measures, tmp_path / "m.csv"), c, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"{c}: column 'age' has 2 implausible age(s), outside 0-120")
    assert "line 3 (case 'case002'): -5" in message
    assert "line 6 (case 'case005'): 999" in message
    assert "case007" not in message and "case008" not in message
    assert not (tmp_path / "out").exists()


def test_implausible_age_in_xlsx_names_the_sheet_row(tmp_path: Path) -> None:
    _, covariates = _cohort(5)
    covariates[2]["age"] = 130.5
    x = write_xlsx({"Sheet1": covariates}, tmp_path / "c.xlsx")
    with pytest.raises(ValueError, match=r"c\.xlsx.*row 4 \(case 'case003'\): 130\.5"):
        covariates_by_case(read_table(x), str(x))


# --- the split keeps the public names ---------------------------------------------------------


def test_public_names_are_reexported_from_stats() -> None:
    modules = (stats_read, stats_table, stats_methods, stats_analysis, stats_report)
    for name in stats_api.__all__:
        obj = getattr(stats_api, name)
        homes = [m for m in modules if getattr(m, name, None) is obj]
        assert homes, name
    for name in ("read_table", "cohort_stats", "agreement", "run_stats", "run_agreement",
                 "partial_spearman", "benjamini_hochberg", "icc", "bland_altman",
                 "measure_columns", "sex_code", "plot_against_age", "plot_bland_altman"):
        assert name in stats_api.__all__, name


def test_matched_cases_without_age_or_sex_are_named() -> None:
    measures, covariates = _cohort(12)
    covariates[2]["age"] = None
    covariates[8]["sex"] = ""
    result = cohort_analysis(measures, covariates)
    assert all(r["n"] == 10 for r in result.rows)
    assert any(w.startswith("2 matched cases have no age or no sex") and "'case003'" in w
               and "'case009'" in w for w in result.warnings)


def test_formula_guard_of_write_csv_is_undone_on_reading(tmp_path: Path) -> None:
    # numbers that arrive as text (e.g. from csv.DictReader) get the "'" guard in write_csv
    path = _text(tmp_path / "g.csv", "case,PS_asym_pct,note,other\n"
                                     "c1,'-10.559,'=1+1,'abc\nc2,'+3.5,'@x,-\n")
    rows = read_table(path)
    assert rows[0] == {"case": "c1", "PS_asym_pct": -10.559, "note": "=1+1", "other": "'abc"}
    assert rows[1] == {"case": "c2", "PS_asym_pct": 3.5, "note": "@x", "other": "-"}
