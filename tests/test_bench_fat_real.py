"""ICC(2,1) against Shrout & Fleiss (1979), and the real-data fat benchmark on a few slices."""

import csv

import numpy as np
import pytest

from napari_paraspinal.bench_fat_real import (
    agreement,
    bench_fat_real,
    icc_2_1,
    write_fat_real_report,
)
from napari_paraspinal.fat import METHODS
from napari_paraspinal.realdata import default_real_data_dir

#: Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SF_TABLE = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8],
                     [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)


def _icc21_by_anova(x: np.ndarray) -> float:
    """Written out from the sums of squares of a two-way table, cell by cell."""
    n, k = x.shape
    rows = [sum(r) / k for r in x]
    cols = [sum(x[i][j] for i in range(n)) / n for j in range(k)]
    g = sum(map(sum, x)) / (n * k)
    ss_total = sum((x[i][j] - g) ** 2 for i in range(n) for j in range(k))
    ss_r = k * sum((r - g) ** 2 for r in rows)
    ss_c = n * sum((c - g) ** 2 for c in cols)
    ms_r, ms_c = ss_r / (n - 1), ss_c / (k - 1)
    ms_e = (ss_total - ss_r - ss_c) / ((n - 1) * (k - 1))
    sigma_t = (ms_r - ms_e) / k  # target variance component
    sigma_j = (ms_c - ms_e) / n  # judge variance component
    return sigma_t / (sigma_t + sigma_j + ms_e)


def test_icc_matches_shrout_fleiss_example() -> None:
    assert icc_2_1(SF_TABLE) == pytest.approx(0.29, abs=0.005)
    assert icc_2_1(SF_TABLE) == pytest.approx(_icc21_by_anova(SF_TABLE), rel=1e-12)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3)) + rng.normal(size=(30, 1)) * 2 + [0, 0.5, 1]
    assert icc_2_1(x) == pytest.approx(_icc21_by_anova(x), rel=1e-12)


def test_agreement_of_identical_and_shifted() -> None:
    ref = np.array([5.0, 9.0, 12.0, 20.0])
    a = agreement(ref, ref)
    assert a["mae_points"] == 0 and a["icc_2_1"] == pytest.approx(1.0)
    b = agreement(ref + 2.0, ref)
    assert b["bias_points"] == pytest.approx(2.0) and b["loa_low"] == pytest.approx(2.0)
    assert b["spearman"] == pytest.approx(1.0) and b["icc_2_1"] < 1.0


@pytest.mark.skipif(not (default_real_data_dir() / "lpm_tum01" / "fat.nii.gz").is_file(),
                    reason="real Dixon case lpm_tum01 not found")
def test_bench_on_two_slices(tmp_path) -> None:
    pairs: list[dict] = []
    rows = bench_fat_real(slices=[6, 20], pairs=pairs)
    methods = [r["method"] for r in rows if "n" in r]
    assert methods == list(METHODS)
    assert all(r["n"] == 8 for r in rows if "n" in r)
    assert len(pairs) == 8 * len(METHODS)
    assert all(0 <= p["measured"] <= 100 and 3 < p["dixon"] < 30 for p in pairs)
    csv_path, md_path = write_fat_real_report(rows, tmp_path, "header line")
    assert md_path.read_text().startswith("header line")
    assert [r["method"] for r in csv.DictReader(csv_path.open())][:len(methods)] == methods
