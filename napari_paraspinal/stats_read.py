"""Reading the tables that ``paraspinal stats`` and ``paraspinal agree`` work on (CSV or XLSX).

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
from collections.abc import Mapping, Sequence
from pathlib import Path

from .stats_table import MISSING_VALUES, case_key

#: Delimiters a CSV file may use, in order of preference when two fit equally well.
CSV_DELIMITERS: tuple[str, ...] = (",", ";", "\t")
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
    if s.lower() in MISSING_VALUES:
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
