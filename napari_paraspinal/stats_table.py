"""Reading and joining the tables that ``paraspinal stats`` and ``paraspinal agree`` work on.

CSV files are parsed strictly: the delimiter (comma, semicolon or tab) is the one under which
every row has the header's number of fields, quotes follow RFC 4180 (a quote inside a quoted
field is doubled), and a row with the wrong number of fields is refused with its line number,
never shifted into the wrong columns. Every row remembers where it came from (``origin``), so
that a bad value can be named by file, line and case.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .core.labels import LABELS
from .export import columns_of

Row = Mapping[str, object]

#: Structure names a measure column starts with (``MF_L_fat_pct`` -> ``MF``).
MUSCLES: tuple[str, ...] = tuple(dict.fromkeys(lab.muscle for lab in LABELS))
#: Unit suffixes of measure columns.
MEASURE_SUFFIXES: tuple[str, ...] = ("_mm2", "_pct")
#: Delimiters a CSV file may use, in order of preference when two fit equally well.
CSV_DELIMITERS: tuple[str, ...] = (",", ";", "\t")
#: Plausible ages in years (inclusive): anything outside is a typo or a wrong unit.
AGE_RANGE: tuple[float, float] = (0.0, 120.0)
#: How many offending ids or values a message lists before "and N more".
LIST_LIMIT = 12

_MISSING = {"", "na", "n/a", "nan", "none", "null"}
_SEX = {"f": 0, "female": 0, "0": 0, "m": 1, "male": 1, "1": 1}
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")
#: What ``export.write_csv`` guards with a leading ``'`` (OWASP CSV injection); read undoes it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


class TableRow(dict):
    """A table row (column -> value) that remembers its place in the file it was read from.

    ``origin`` is ``"line 7"`` for a CSV file or ``"row 7"`` for a sheet; it compares and
    copies like a plain dict.
    """

    __slots__ = ("origin",)

    def __init__(self, values: Mapping[str, object], origin: str) -> None:
        super().__init__(values)
        self.origin = origin


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
# Reading


def read_table(path: str | os.PathLike[str], sheet: str | None = None) -> list[dict]:
    """Rows of a CSV or XLSX table as dicts: numbers as float, empty cells None.

    The ``case`` column is kept as text (``12`` and ``12.0`` both become ``"12"``). For XLSX
    the sheet is ``sheet``, else "measurements" when there is one, else the first sheet. A CSV
    file may use comma, semicolon or tab; in a semicolon file ``12,5`` is the number 12.5.
    Raises ValueError naming the file and line when a CSV row does not fit the header.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        return _read_csv(p)
    if suffix in (".xlsx", ".xlsm"):
        return _read_xlsx(p, sheet)
    raise ValueError(f"{p}: unsupported table format {p.suffix!r} (use .csv or .xlsx)")


class _Misfit(Exception):
    """A CSV parse that does not hold together: a quoting error or a row of the wrong width."""


def _records(text: str, delimiter: str) -> list[tuple[int, list[str]]]:
    """Non-blank records of ``text`` with the line each starts on (RFC 4180 quoting, strict)."""
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quotechar='"', doublequote=True,
                        skipinitialspace=False, strict=True)
    out = []
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return out
        except csv.Error as err:
            raise _Misfit(f"line {start}: {err}") from None
        if any(f.strip() for f in fields):
            out.append((start, fields))


def _misfit(records: list[tuple[int, list[str]]]) -> _Misfit | None:
    """The first data record whose field count differs from the header's, if any."""
    width = len(records[0][1])
    for line, fields in records[1:]:
        if len(fields) != width:
            return _Misfit(f"line {line} has {len(fields)} fields but the header has {width}")
    return None


def _parse_csv_text(text: str, source: str, preferred: Sequence[str] = CSV_DELIMITERS
                    ) -> tuple[str, list[tuple[int, list[str]]]]:
    """The delimiter and records of a CSV text, chosen so that every row fits the header.

    Each delimiter is tried with standard quoting; among the parses whose header has the most
    columns and whose rows all fit it, the first in ``preferred`` wins. When none fits, the
    error names the line of the first misfit under the delimiter that splits the header most.
    """
    parses: dict[str, list[tuple[int, list[str]]] | _Misfit] = {}
    widths: dict[str, int] = {}
    for delim in preferred:
        try:
            records = _records(text, delim)
        except _Misfit as err:
            parses[delim] = err
            first = next((ln for ln in text.splitlines() if ln.strip()), "")
            widths[delim] = len(first.split(delim))
            continue
        if not records:
            return delim, []
        parses[delim] = _misfit(records) or records
        widths[delim] = len(records[0][1])
    # a delimiter that does not split the header is no candidate while another one does
    most = max(widths.values())
    candidates = [d for d in preferred if widths[d] == most]
    for delim in candidates:
        if not isinstance(parses[delim], _Misfit):
            return delim, parses[delim]  # type: ignore[return-value]
    delim = candidates[0]
    raise ValueError(
        f"{source}: {parses[delim]} (delimiter {_DELIMITER_NAMES[delim]}). Nothing was read: "
        f"a field that holds the delimiter, a quote or a line break must be in double quotes, "
        f"with every quote inside it doubled (\"say \"\"hi\"\"\")")


def _read_csv(path: Path) -> list[dict]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                         f"{err.start}); save the table as 'CSV UTF-8' or XLSX") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    preferred = (("\t",) + tuple(d for d in CSV_DELIMITERS if d != "\t")
                 if path.suffix.lower() == ".tsv" else CSV_DELIMITERS)
    delim, records = _parse_csv_text(text, str(path), preferred)
    if not records:
        return []
    names = [h.strip() for h in records[0][1]]
    decimal_comma = delim == ";"
    return [TableRow({name: _parse_text(v, name, decimal_comma)
                      for name, v in zip(names, fields, strict=True) if name}, f"line {line}")
            for line, fields in records[1:]]


def _read_xlsx(path: Path, sheet: str | None) -> list[dict]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        if sheet is not None:
            if sheet not in wb.sheetnames:
                raise ValueError(f"{path}: no sheet {sheet!r} (sheets: {wb.sheetnames})")
            ws = wb[sheet]
        else:
            ws = wb["measurements"] if "measurements" in wb.sheetnames else wb.worksheets[0]
        names: list[str] | None = None
        rows: list[dict] = []
        # iter_rows starts at row 1 and fills missing rows, so the count is the sheet's row
        for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
            if values is None or all(v is None or v == "" for v in values):
                continue
            if names is None:
                names = ["" if h is None else str(h).strip() for h in values]
                continue
            rows.append(TableRow({name: _parse_cell(v, name) for name, v in
                                  zip(names, values, strict=False) if name}, f"row {number}"))
        return rows
    finally:
        wb.close()


def _parse_text(text: str, column: str, decimal_comma: bool = False) -> object:
    """A CSV cell: None when empty or a missing-value token, float when numeric, else text.

    A ``'`` before ``= + - @`` (the formula guard ``write_csv`` adds) is removed, so that a
    guarded ``'-10.5`` reads back as -10.5 and ``'=x`` as the text ``=x``.
    """
    s = text.strip()
    if s.startswith("'") and s[1:].lstrip(" \n").startswith(_FORMULA_START):
        s = s[1:].strip()
    if column == "case":
        return s or None
    if s.lower() in _MISSING:
        return None
    if decimal_comma and _DECIMAL_COMMA.fullmatch(s):
        s = s.replace(",", ".")
    try:
        value = float(s)
    except ValueError:
        return s
    return None if math.isnan(value) else value


def _parse_cell(value: object, column: str) -> object:
    """An XLSX cell: numbers (not booleans) become float, text is parsed like CSV."""
    if value is None:
        return None
    if column == "case":
        return case_key(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, str):
        return _parse_text(value, column)
    return str(value)


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
        if text in _MISSING:
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
