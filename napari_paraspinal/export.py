"""Write measurement tables as XLSX (openpyxl) and CSV, atomically, numbers kept as numbers."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .core.atomic import atomic_path, write_text_atomic

Row = Mapping[str, object]


def columns_of(rows: Sequence[Row]) -> list[str]:
    """Column names in first-seen order across all rows."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def write_csv(rows: Sequence[Row], path: str | os.PathLike[str]) -> Path:
    """CSV with a header row; missing values are empty cells."""
    cols = columns_of(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in cols})
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
        ws.append(cols)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in rows:
            ws.append([_cell(row.get(c)) for c in cols])
        for n, col in enumerate(cols, start=1):
            ws.column_dimensions[ws.cell(1, n).column_letter].width = max(10, len(col) + 2)
        ws.freeze_panes = "B2"
    with atomic_path(path) as tmp:
        wb.save(tmp)
    return Path(path)


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
