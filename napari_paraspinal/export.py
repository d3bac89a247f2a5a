"""Write measurement tables as XLSX (openpyxl) and CSV, atomically, numbers kept as numbers.

Text is only ever text. File names, messages and DICOM patient fields come from outside; a
name like ``=HYPERLINK(...)`` must not become a live formula. In the XLSX every text cell
is written as a string cell (never a formula) with Excel's quote prefix, so it stays text
even when edited; characters XML cannot hold are replaced. In the CSV, text starting with
``= + - @``, tab or carriage return (after any leading spaces or line breaks) gets a
leading ``'`` (the OWASP CSV-injection rule), so spreadsheets open it as text. Numbers are
never altered.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .core.atomic import atomic_path, write_text_atomic

Row = Mapping[str, object]

#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def columns_of(rows: Sequence[Row]) -> list[str]:
    """Column names in first-seen order across all rows."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def write_csv(rows: Sequence[Row], path: str | os.PathLike[str]) -> Path:
    """CSV with a header row; missing values are empty cells; text made inert."""
    cols = columns_of(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([inert_text(c) for c in cols])
    for row in rows:
        writer.writerow([_csv_cell(row.get(c, "")) for c in cols])
    write_text_atomic(path, buf.getvalue())
    return Path(path)


def write_xlsx(sheets: Mapping[str, Sequence[Row]], path: str | os.PathLike[str]) -> Path:
    """An XLSX workbook with one sheet per entry; ints and floats are stored as numbers."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title=title[:31])
        cols = columns_of(rows)
        _append_row(ws, cols)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in rows:
            _append_row(ws, [_cell(row.get(c)) for c in cols])
        for n, col in enumerate(cols, start=1):
            ws.column_dimensions[ws.cell(1, n).column_letter].width = max(10, len(col) + 2)
        ws.freeze_panes = "B2"
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return Path(path)


def is_formula_like(text: str) -> bool:
    """True when a spreadsheet could take ``text`` for a formula (see :data:`FORMULA_START`)."""
    return text.startswith(FORMULA_START) or text.lstrip(" \n").startswith(FORMULA_START)


def inert_text(text: str) -> str:
    """``text`` with a leading ``'`` when it could start a formula (OWASP CSV rule)."""
    return "'" + text if is_formula_like(text) else text


def _csv_cell(value: object) -> object:
    """Text made inert; numbers (also numpy scalars), booleans and None as they are.

    A carriage return inside text becomes a line feed: Python's CSV writer quotes fields
    holding the line terminator only, and a bare CR would end the record for readers.
    """
    if value is None or isinstance(value, (int, float, bool)) or hasattr(value, "dtype"):
        return value
    text = str(value)
    return inert_text(text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text)


def _append_row(ws: object, values: Sequence[object]) -> None:
    """Append a row; every text cell is a string cell (never a formula), quote-prefixed
    when it looks like one, with characters that XML cannot hold replaced."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    ws.append([ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v
               for v in values])
    row = ws._current_row  # the row just appended (ws.max_row scans every cell)
    for col, value in enumerate(values, start=1):
        if isinstance(value, str):
            cell = ws.cell(row, col)
            cell.data_type = "s"
            if is_formula_like(cell.value):
                cell.quotePrefix = True


def _cell(value: object) -> object:
    """openpyxl accepts str, int, float, bool, None; anything else becomes text."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)


def markdown_table(rows: Sequence[Row]) -> str:
    """A GitHub-flavoured Markdown table; floats to 4 significant digits, NaN as ``n/a``."""
    cols = columns_of(rows)
    if not cols:
        return ""
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_text(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) or (hasattr(value, "dtype") and value.dtype.kind == "f"):
        v = float(value)
        if not math.isfinite(v):
            return "n/a" if math.isnan(v) else str(v)
        return f"{v:.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")
