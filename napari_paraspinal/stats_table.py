"""Checking and joining the tables that ``paraspinal stats`` and ``paraspinal agree`` work on
(read by :mod:`.stats_read`): measure columns, numeric values, case ids and covariates, and
the case ids two tables do not share.

A row read from a file remembers where it came from (``origin``), so that a bad value can be
named by file, line and case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .core.labels import LABELS
from .export import columns_of

Row = Mapping[str, object]

#: Structure names a measure column starts with (``MF_L_fat_pct`` -> ``MF``).
MUSCLES: tuple[str, ...] = tuple(dict.fromkeys(lab.muscle for lab in LABELS))
#: Unit suffixes of measure columns.
MEASURE_SUFFIXES: tuple[str, ...] = ("_mm2", "_pct")
#: Plausible ages in years (inclusive): anything outside is a typo or a wrong unit.
AGE_RANGE: tuple[float, float] = (0.0, 120.0)
#: How many offending ids or values a message lists before "and N more".
LIST_LIMIT = 12

MISSING_VALUES = {"", "na", "n/a", "nan", "none", "null"}
_SEX = {"f": 0, "female": 0, "0": 0, "m": 1, "male": 1, "1": 1}


def origin_of(row: Row, index: int) -> str:
    """Where a row came from: its line in the file, else its 1-based position in the table."""
    origin = getattr(row, "origin", None)
    return origin if origin else f"row {index + 1}"


def listing(items: Sequence[object], limit: int = LIST_LIMIT, *, quote: bool = True) -> str:
    """``'a', 'b', 'c'`` (text quoted unless ``quote`` is False), cut after ``limit``."""
    shown = ", ".join(repr(x) if quote and isinstance(x, str) else str(x)
                      for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------
# Columns and values


def case_key(value: object) -> str | None:
    """A case id as text, so that ``12``, ``12.0`` and ``" 12"`` join with each other."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def measure_columns(rows: Sequence[Row], source: str = "measurements") -> list[str]:
    """Measure columns of a table: ``<SP|DI|PS|MF|ES>_..._<mm2|pct>``, in table order.

    Geometry columns such as ``pixel_area_mm2`` are not measures. Raises ValueError, naming
    ``source`` and the column, when a measure column holds a non-numeric value.
    """
    cols = [c for c in columns_of(rows)
            if c.endswith(MEASURE_SUFFIXES) and c.split("_", 1)[0] in MUSCLES]
    for c in cols:
        numeric_column(rows, c, source)
    return cols


def numeric_column(rows: Sequence[Row], column: str, source: str = "table") -> np.ndarray:
    """One column as a float array, NaN where missing; ValueError on a non-numeric value."""
    out = np.full(len(rows), np.nan)
    for i, row in enumerate(rows):
        value = row.get(column)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer,
                                                             np.floating)):
            raise ValueError(f"{source}: column {column!r} has a non-numeric value {value!r} "
                             f"({origin_of(row, i)}, case {row.get('case')!r})")
        out[i] = float(value)
    return out


def check_columns(rows: Sequence[Row], columns: Iterable[str], source: str) -> list[str]:
    """``columns`` as a list, after checking each is in ``rows`` and numeric."""
    present = set(columns_of(rows))
    cols = list(columns)
    for c in cols:
        if c not in present:
            raise ValueError(f"{source}: no column {c!r}")
        numeric_column(rows, c, source)
    return cols


def sex_code(value: object) -> int | None:
    """Sex as 0 = female, 1 = male from M/F, male/female or 0/1 (any case); None if missing."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if float(value) in (0.0, 1.0):
            return int(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in MISSING_VALUES:
            return None
        if text in _SEX:
            return _SEX[text]
    raise ValueError(f"sex value {value!r} is not one of M/F, male/female or 0/1")


def covariates_by_case(rows: Sequence[Row], source: str = "covariates"
                       ) -> dict[str, tuple[float, float]]:
    """``case -> (age, sex)`` from a covariates table; NaN where a value is missing.

    Column names ``case``, ``age`` and ``sex`` are matched ignoring case. Raises ValueError,
    naming the file, line, case and value, for an unknown sex code, a repeated case or an age
    outside ``AGE_RANGE`` (a typo such as -5 or 999 would otherwise bend every age test).
    """
    names = {c.strip().lower(): c for c in columns_of(rows)}
    for need in ("case", "age", "sex"):
        if need not in names:
            raise ValueError(f"{source}: no {need!r} column (columns: {list(names.values())})")
    ages = numeric_column(rows, names["age"], source)
    low, high = AGE_RANGE
    bad = [f"{origin_of(row, i)} (case {case_key(row.get(names['case']))!r}): {age:g}"
           for i, (row, age) in enumerate(zip(rows, ages, strict=True))
           if math.isfinite(age) and not low <= age <= high]
    if bad:
        raise ValueError(f"{source}: column {names['age']!r} has {len(bad)} implausible "
                         f"age(s), outside {low:g}-{high:g} years: {listing(bad, quote=False)}")
    out: dict[str, tuple[float, float]] = {}
    seen: dict[str, str] = {}
    for i, (row, age) in enumerate(zip(rows, ages, strict=True)):
        case = case_key(row.get(names["case"]))
        if case is None:
            continue
        where = origin_of(row, i)
        if case in out:
            raise ValueError(f"{source}: case {case!r} appears more than once "
                             f"({seen[case]} and {where})")
        try:
            sex = sex_code(row.get(names["sex"]))
        except ValueError as err:
            raise ValueError(f"{source}: column {names['sex']!r}, {where}, case {case!r}: "
                             f"{err}") from None
        out[case] = (float(age), np.nan if sex is None else float(sex))
        seen[case] = where
    return out


def by_case(rows: Sequence[Row], source: str) -> dict[str, Row]:
    """Rows keyed by case id (rows without one are skipped); ValueError on a repeated case."""
    out: dict[str, Row] = {}
    seen: dict[str, str] = {}
    for i, row in enumerate(rows):
        case = case_key(row.get("case"))
        if case is None:
            continue
        if case in out:
            raise ValueError(f"{source}: case {case!r} appears more than once "
                             f"({seen[case]} and {origin_of(row, i)})")
        out[case] = row
        seen[case] = origin_of(row, i)
    return out


# ---------------------------------------------------------------------------------------------
# Joining


def _loose(case: str) -> str:
    """A case id with letter case, spaces, separators and leading zeros ignored."""
    text = re.sub(r"[\s_\-.]+", "", case.lower())
    return re.sub(r"\d+", lambda m: str(int(m.group())), text)


def join_warnings(left: Iterable[str], right: Iterable[str], sources: tuple[str, str],
                  *, right_dropped: bool = False) -> list[str]:
    """Messages on the case ids of two tables that do not match each other.

    ``left`` ids missing from ``right`` are dropped from the analysis (said with how many);
    ``right`` ids missing from ``left`` are listed too (also dropped when ``right_dropped``),
    since a partial match usually means the two tables spell ids differently. Ids equal up to
    letter case, separators or leading zeros are pointed out, not joined: a guess could pair
    the wrong people.
    """
    src_l, src_r = sources
    lids, rids = list(dict.fromkeys(left)), list(dict.fromkeys(right))
    rset, lset = set(rids), set(lids)
    only_l = [c for c in lids if c not in rset]
    only_r = [c for c in rids if c not in lset]
    out = []
    if only_l:
        out.append(f"{len(only_l)} of {len(lids)} cases of {src_l} have no row in {src_r} and "
                   f"are left out: {listing(only_l)}")
    if only_r:
        fate = " and are left out" if right_dropped else ""
        out.append(f"{len(only_r)} of {len(rids)} case ids of {src_r} match no case of "
                   f"{src_l}{fate}: {listing(only_r)}")
    loose_r: dict[str, str] = {}
    for c in only_r:
        loose_r.setdefault(_loose(c), c)
    near = [f"{c!r} ~ {loose_r[_loose(c)]!r}" for c in only_l if _loose(c) in loose_r]
    if near:
        out.append(f"ids that differ only in letter case, separators or leading zeros are not "
                   f"joined ({src_l} ~ {src_r}): {listing(near, quote=False)}; spell them the same "
                   f"way")
    return out
