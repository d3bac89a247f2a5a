"""Cohort statistics and agreement: checked against known synthetic relationships and against
reference implementations (pingouin, scipy)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin as pg
import pytest
from openpyxl import load_workbook
from PIL import Image
from scipy import stats as sps

from napari_paraspinal.export import markdown_table, write_csv, write_xlsx
from napari_paraspinal.stats import (
    MIN_COHORT_CASES,
    agreement,
    benjamini_hochberg,
    bland_altman,
    cohort_stats,
    icc,
    measure_columns,
    partial_spearman,
    plot_against_age,
    plot_bland_altman,
    read_table,
    run_agreement,
    run_stats,
    sex_code,
)


def synthetic_cohort(n: int = 80, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Fat % rises with age and is higher in women; CSA and asymmetry ignore both."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(25, 75, n)
    male = rng.integers(0, 2, n)
    measures, covariates = [], []
    for i in range(n):
        case = f"case{i:03d}"
        fat = 5 + 0.3 * age[i] + 6 * (1 - male[i]) + rng.normal(0, 2.5)
        measures.append({
            "case": case, "status": "segmented", "pixel_area_mm2": 0.5 + 0.01 * i,
            "MF_L_csa_mm2": round(900 + rng.normal(0, 120), 3),
            "MF_L_fat_pct": round(fat, 3),
            "ES_R_fat_pct": round(fat + rng.normal(0, 2), 3),
            "PS_asym_pct": round(rng.normal(0, 5), 3),
        })
        covariates.append({"case": case, "age": round(age[i], 1),
                           "sex": ["F", "male"][male[i]] if i % 2 else ["female", "M"][male[i]]})
    return measures, covariates


# --- reading -------------------------------------------------------------------------------


def test_read_table_round_trip_csv_and_xlsx(tmp_path: Path) -> None:
    rows = [
        {"case": "007", "status": "segmented", "registration_flagged": False,
         "pixel_area_mm2": 0.38499, "MF_L_csa_mm2": 401.159, "ES_R_fat_pct": 6.749,
         "PS_asym_pct": None, "rows": 304},
        {"case": "12", "status": "failed", "notes": "unreadable | bad"},
    ]
    csv_path = write_csv(rows, tmp_path / "m.csv")
    xlsx_path = write_xlsx({"measurements": rows, "provenance": [{"case": "007"}]},
                           tmp_path / "m.xlsx")
    for path in (csv_path, xlsx_path):
        back = read_table(path)
        assert [r["case"] for r in back] == ["007", "12"], path
        first, second = back
        assert first["MF_L_csa_mm2"] == 401.159 and isinstance(first["MF_L_csa_mm2"], float)
        assert first["rows"] == 304.0 and isinstance(first["rows"], float)
        assert first["PS_asym_pct"] is None and second["MF_L_csa_mm2"] is None
        assert first["status"] == "segmented" and second["notes"] == "unreadable | bad"
        assert measure_columns(back) == ["MF_L_csa_mm2", "ES_R_fat_pct", "PS_asym_pct"]


def test_read_table_numeric_case_ids_and_semicolons(tmp_path: Path) -> None:
    write_xlsx({"Sheet1": [{"case": 12, "age": 40, "sex": "f"}]}, tmp_path / "c.xlsx")
    assert read_table(tmp_path / "c.xlsx") == [{"case": "12", "age": 40.0, "sex": "f"}]
    (tmp_path / "c.csv").write_text("\ufeffcase;age;sex\n12;40;M\n", encoding="utf-8")
    assert read_table(tmp_path / "c.csv") == [{"case": "12", "age": 40.0, "sex": "M"}]
    with pytest.raises(ValueError, match="unsupported"):
        read_table(tmp_path / "c.json")


def test_non_numeric_measure_names_file_and_column(tmp_path: Path) -> None:
    measures, covariates = synthetic_cohort(10)
    measures[3]["ES_R_fat_pct"] = "12,5"
    m = write_csv(measures, tmp_path / "m.csv")
    c = write_csv(covariates, tmp_path / "c.csv")
    with pytest.raises(ValueError, match=r"m\.csv.*'ES_R_fat_pct'.*'12,5'"):
        run_stats(m, c, tmp_path / "out")
    covariates[2]["age"] = "forty"
    c = write_csv(covariates, tmp_path / "c.csv")
    with pytest.raises(ValueError, match=r"c\.csv.*'age'.*'forty'"):
        cohort_stats(measures[:1], read_table(c), sources=("m", str(c)))


def test_sex_coding() -> None:
    for value, code in [("M", 1), ("male", 1), ("MALE ", 1), (1, 1), (1.0, 1), ("1", 1),
                        ("f", 0), ("Female", 0), (0, 0), ("0", 0), (None, None), ("", None)]:
        assert sex_code(value) == code, value
    with pytest.raises(ValueError, match="'x'"):
        sex_code("x")
    with pytest.raises(ValueError, match="2"):
        sex_code(2)
    measures, covariates = synthetic_cohort(10)
    covariates[4]["sex"] = "unknown"
    with pytest.raises(ValueError, match=r"case004.*'unknown'"):
        cohort_stats(measures, covariates)


# --- statistics against references ----------------------------------------------------------


def test_partial_spearman_matches_pingouin() -> None:
    rng = np.random.default_rng(3)
    n = 60
    c1 = rng.normal(size=n)
    c2 = rng.integers(0, 2, n).astype(float)  # binary covariate: many ties
    x = c1 + rng.normal(size=n)
    y = 0.5 * x - c1 + 0.8 * c2 + rng.normal(size=n)
    x = np.round(x, 1)  # ties in x too
    x[[4, 17]] = np.nan  # dropped rows
    df = pd.DataFrame({"x": x, "y": y, "c1": c1, "c2": c2})
    for covar in (["c1"], ["c2"], ["c1", "c2"]):
        ref = pg.partial_corr(df, x="x", y="y", covar=covar, method="spearman")
        rho, p, m = partial_spearman(x, y, df[covar].to_numpy())
        assert m == int(ref["n"].iloc[0]) == n - 2
        assert rho == pytest.approx(float(ref["r"].iloc[0]), abs=1e-10)
        p_ref = float(ref[[c for c in ref.columns if c.startswith("p")][0]].iloc[0])
        assert p == pytest.approx(p_ref, rel=1e-8, abs=1e-12)
    rho, p, m = partial_spearman(x, y)  # no covariate: plain Spearman
    ok = np.isfinite(x)
    ref = sps.spearmanr(x[ok], y[ok])
    assert (rho, p, m) == (pytest.approx(ref.statistic, abs=1e-12),
                           pytest.approx(ref.pvalue, rel=1e-8), n - 2)


def test_partial_spearman_undefined_cases_are_nan() -> None:
    rho, p, n = partial_spearman([1, 2, 3], [3, 1, 2], [1, 2, 2])
    assert n == 3 and math.isnan(rho) and math.isnan(p)  # 0 degrees of freedom
    rho, p, n = partial_spearman([1, 1, 1, 1, 1], [1, 2, 3, 4, 5], [2, 1, 2, 1, 2])
    assert n == 5 and math.isnan(rho) and math.isnan(p)  # constant x


def test_benjamini_hochberg_matches_scipy_and_pingouin() -> None:
    rng = np.random.default_rng(11)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 25), [0.5, 0.5, 1.0]])
    q = benjamini_hochberg(p)
    np.testing.assert_allclose(q, sps.false_discovery_control(p, method="bh"), rtol=1e-12)
    np.testing.assert_allclose(q, pg.multicomp(p, method="fdr_bh")[1], rtol=1e-12)
    assert (q >= p).all() and (q <= 1).all()
    order = np.argsort(p)
    assert (np.diff(q[order]) >= -1e-15).all()  # monotone in p
    with_nan = np.array([0.01, np.nan, 0.04, 0.03])
    np.testing.assert_allclose(benjamini_hochberg(with_nan)[[0, 2, 3]],
                               sps.false_discovery_control([0.01, 0.04, 0.03]))
    assert math.isnan(benjamini_hochberg(with_nan)[1])


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside pingouin, newer pandas
def test_icc_matches_pingouin() -> None:
    rng = np.random.default_rng(5)
    truth = rng.normal(1000, 150, 30)
    a = truth + rng.normal(0, 30, 30)
    b = truth + 25 + rng.normal(0, 30, 30)  # systematic offset: ICC2 < ICC3
    b[3] = np.nan
    ours = icc(a, b)
    long = pd.DataFrame({"case": np.tile(np.arange(30), 2), "rater": np.repeat(["a", "b"], 30),
                         "value": np.concatenate([a, b])})
    ref = pg.intraclass_corr(long, targets="case", raters="rater", ratings="value",
                             nan_policy="omit").set_index("Type")
    ci_col = "CI95" if "CI95" in ref.columns else "CI95%"
    for ours_key, types in (("icc2", ("ICC(A,1)", "ICC2")), ("icc3", ("ICC(C,1)", "ICC3"))):
        row = ref.loc[next(t for t in types if t in ref.index)]
        assert ours[ours_key] == pytest.approx(float(row["ICC"]), abs=1e-10)
        lo, hi = row[ci_col]
        # pingouin rounds its intervals to 2 decimals
        assert ours[f"{ours_key}_ci_low"] == pytest.approx(lo, abs=0.0051)
        assert ours[f"{ours_key}_ci_high"] == pytest.approx(hi, abs=0.0051)
        assert ours["f"] == pytest.approx(float(row["F"]), rel=1e-10)
        assert ours["p"] == pytest.approx(float(row["pval"]), rel=1e-8, abs=1e-300)
    assert ours["n"] == 29 and ours["icc2"] < ours["icc3"] < 1


def test_bland_altman_known_offset() -> None:
    rng = np.random.default_rng(2)
    a = rng.uniform(300, 1500, 40)
    noise = rng.normal(0, 10, 40)
    b = a + 12.0 + noise
    ba = bland_altman(a, b)
    d = b - a
    assert ba["n"] == 40
    assert ba["bias"] == pytest.approx(np.mean(d)) and ba["bias"] == pytest.approx(12, abs=4)
    assert ba["sd"] == pytest.approx(np.std(d, ddof=1))
    assert ba["loa_lower"] == pytest.approx(np.mean(d) - 1.96 * np.std(d, ddof=1))
    assert ba["loa_upper"] == pytest.approx(np.mean(d) + 1.96 * np.std(d, ddof=1))
    assert ba["bias_ci_low"] < 12 < ba["bias_ci_high"]
    assert bland_altman(b, a)["bias"] == pytest.approx(-ba["bias"])  # direction is b - a
    assert math.isnan(bland_altman([1.0], [2.0])["bias"])


# --- the cohort ------------------------------------------------------------------------------


def test_cohort_stats_recovers_synthetic_relationships() -> None:
    measures, covariates = synthetic_cohort()
    rows = {r["measure"]: r for r in cohort_stats(measures, covariates)}
    assert list(rows) == ["MF_L_csa_mm2", "MF_L_fat_pct", "ES_R_fat_pct", "PS_asym_pct"]
    for fat in ("MF_L_fat_pct", "ES_R_fat_pct"):
        r = rows[fat]
        assert r["n"] == 80 and r["n_female"] + r["n_male"] == 80
        assert r["rho_age"] > 0.5 and r["q_age"] < 1e-6
        assert r["rho_sex"] < -0.3 and r["q_sex"] < 0.01  # sex 1 = male: lower in men
        assert r["note"] == ""
    for null in ("MF_L_csa_mm2", "PS_asym_pct"):
        assert rows[null]["q_age"] > 0.05 and rows[null]["q_sex"] > 0.05
    # each value agrees with pingouin on the same joined data
    df = pd.DataFrame(measures).assign(
        age=[c["age"] for c in covariates],
        sex=[sex_code(c["sex"]) for c in covariates])
    ref = pg.partial_corr(df, x="MF_L_fat_pct", y="age", covar="sex", method="spearman")
    assert rows["MF_L_fat_pct"]["rho_age"] == pytest.approx(float(ref["r"].iloc[0]), abs=1e-10)
    # q within each covariate family across the four measures
    q = benjamini_hochberg([r["p_sex"] for r in rows.values()])
    np.testing.assert_allclose([r["q_sex"] for r in rows.values()], q)


def test_cohort_stats_edge_cases() -> None:
    measures, covariates = synthetic_cohort(12)
    for i, row in enumerate(measures):
        row["MF_L_csa_mm2"] = 800.0  # constant
        if i > 2:
            row["PS_asym_pct"] = None  # 3 complete cases
    measures.append({"case": "no_covariates", "MF_L_fat_pct": 99.0})
    covariates[0]["age"] = None  # missing covariate: dropped
    rows = {r["measure"]: r for r in cohort_stats(measures, covariates)}
    assert rows["MF_L_fat_pct"]["n"] == 11
    assert rows["MF_L_csa_mm2"]["note"] == "constant measure"
    assert math.isnan(rows["MF_L_csa_mm2"]["rho_age"]) and math.isnan(rows["MF_L_csa_mm2"]["q_age"])
    assert rows["PS_asym_pct"]["n"] == 2
    assert f"fewer than {MIN_COHORT_CASES}" in rows["PS_asym_pct"]["note"]
    assert math.isnan(rows["PS_asym_pct"]["p_sex"])
    women = [c | {"sex": "F"} for c in covariates]
    one_sex = {r["measure"]: r for r in cohort_stats(measures, women)}["MF_L_fat_pct"]
    assert math.isnan(one_sex["rho_sex"]) and one_sex["rho_age"] > 0
    assert "not adjusted for sex" in one_sex["note"]
    with pytest.raises(ValueError, match="no case"):
        cohort_stats(measures, [{"case": "other", "age": 40, "sex": "M"}])


# --- agreement -------------------------------------------------------------------------------


def test_agreement_joins_on_case() -> None:
    measures, _ = synthetic_cohort(30)
    rng = np.random.default_rng(9)
    corrected = [{"case": r["case"], "MF_L_csa_mm2": r["MF_L_csa_mm2"] + 20 + rng.normal(0, 5),
                  "MF_L_fat_pct": r["MF_L_fat_pct"], "ES_L_fat_pct": 3.0}
                 for r in reversed(measures[2:])]
    rows = {r["measure"]: r for r in agreement(measures, corrected)}
    assert list(rows) == ["MF_L_csa_mm2", "MF_L_fat_pct"]  # common measure columns
    csa = rows["MF_L_csa_mm2"]
    assert csa["n"] == 28 and csa["bias"] == pytest.approx(20, abs=4)
    assert csa["icc3"] > csa["icc2"] > 0.5
    fat = rows["MF_L_fat_pct"]
    assert fat["bias"] == 0 and fat["sd"] == 0
    assert [fat[k] for k in ("icc2", "icc2_ci_low", "icc3_ci_high")] == pytest.approx([1, 1, 1])
    few = agreement(measures[:3], corrected)
    assert all("fewer than 4" in r["note"] for r in few) and math.isnan(few[0]["bias"])


# --- outputs ---------------------------------------------------------------------------------


def _png_ok(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == size
        assert np.asarray(im.convert("L"), dtype=float).std() > 0


def test_run_stats_writes_tables_and_plot(tmp_path: Path) -> None:
    measures, covariates = synthetic_cohort()
    m = write_xlsx({"measurements": measures}, tmp_path / "measurements.xlsx")
    c = write_csv(covariates, tmp_path / "covariates.csv")
    paths = run_stats(m, c, tmp_path / "out")
    assert set(paths) == {"csv", "xlsx", "md", "png"}
    assert [p.name for p in paths.values()] == ["cohort_stats.csv", "cohort_stats.xlsx",
                                                "cohort_stats.md", "cohort_stats.png"]
    _png_ok(paths["png"], (1200, 250))  # 4 measures: one row of 4 panels, 300 x 250 px each
    wb = load_workbook(paths["xlsx"], read_only=True)
    sheet = list(wb["cohort_stats"].iter_rows(values_only=True))
    header, first = sheet[0], dict(zip(sheet[0], sheet[1], strict=True))
    assert header[:2] == ("measure", "n") and "q_sex" in header
    assert isinstance(first["n"], int) and isinstance(first["rho_age"], float)
    assert "0 = female" in str(list(wb["about"].iter_rows(values_only=True)))
    wb.close()
    back = {r["measure"]: r for r in read_table(paths["csv"])}
    assert back["MF_L_fat_pct"]["rho_age"] > 0.5
    md = paths["md"].read_text()
    assert "| measure | n |" in md and "MF_L_fat_pct" in md


def test_run_stats_small_table_gives_notes_not_a_crash(tmp_path: Path) -> None:
    measures, covariates = synthetic_cohort(3)
    m = write_csv(measures, tmp_path / "m.csv")
    c = write_csv(covariates, tmp_path / "c.csv")
    paths = run_stats(m, c, tmp_path / "out")
    rows = read_table(paths["csv"])
    assert all(r["n"] == 3 and r["rho_age"] is None and "fewer than 10" in r["note"]
               for r in rows)
    assert "n/a" in paths["md"].read_text()


def test_run_agreement_writes_tables_and_plot(tmp_path: Path) -> None:
    measures, _ = synthetic_cohort(25)
    other = [r | {"MF_L_fat_pct": r["MF_L_fat_pct"] - 1.5} for r in measures]
    a = write_csv(measures, tmp_path / "auto.csv")
    b = write_xlsx({"measurements": other}, tmp_path / "corrected.xlsx")
    paths = run_agreement(a, b, tmp_path / "out")
    assert [p.name for p in paths.values()] == ["agreement.csv", "agreement.xlsx",
                                                "agreement.md", "agreement.png"]
    _png_ok(paths["png"], (1200, 250))
    rows = {r["measure"]: r for r in read_table(paths["xlsx"], sheet="agreement")}
    assert rows["MF_L_fat_pct"]["bias"] == pytest.approx(-1.5)
    assert rows["MF_L_csa_mm2"]["bias"] == 0 and rows["MF_L_csa_mm2"]["icc2"] == 1


def test_plots_grid_size(tmp_path: Path) -> None:
    measures, covariates = synthetic_cohort(20)
    cols = ["MF_L_csa_mm2", "MF_L_fat_pct", "ES_R_fat_pct", "PS_asym_pct", "MF_L_fat_pct"]
    _png_ok(plot_against_age(measures, covariates, cols, tmp_path / "age.png"), (1200, 500))
    shifted = [r | {"MF_L_fat_pct": r["MF_L_fat_pct"] + 1} for r in measures]
    _png_ok(plot_bland_altman(measures, shifted, cols[:2], tmp_path / "ba.png"), (600, 250))
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_markdown_table() -> None:
    text = markdown_table([{"measure": "MF_L_fat_pct", "n": 80, "rho": 0.123456,
                            "p": 1.234e-9, "big": 1234.567, "q": math.nan, "note": "a|b"}])
    lines = text.splitlines()
    assert lines[0] == "| measure | n | rho | p | big | q | note |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| MF_L_fat_pct | 80 | 0.1235 | 1.234e-09 | 1234.6 | n/a | a\\|b |"
    assert markdown_table([]) == ""
