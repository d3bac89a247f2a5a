"""The contents of the BIDS tables of ``paraspinal run --bids`` (:mod:`.bids`): the label
table (``dseg.tsv``), TSV text, and the measurements' JSON sidecar with every column described
and its units."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from . import __version__
from .core.labels import BY_SHORT, LABELS
from .export import columns_of, inert_text

SOFTWARE = "napari-paraspinal"


def dseg_rows() -> list[dict]:
    """The label table as BIDS ``dseg.tsv`` rows (0 is the background, BIDS's ``BG``)."""
    rows = [{"index": 0, "name": "background", "abbreviation": "BG", "color": "#000000"}]
    return rows + [{"index": lab.value, "name": lab.name, "abbreviation": lab.short,
                    "color": "#{:02x}{:02x}{:02x}".format(*lab.color)} for lab in LABELS]


DSEG_COLUMNS = {k: {"Description": v} for k, v in {
    "index": "label value in the _dseg images", "name": "structure the label stands for",
    "abbreviation": "short name, as in the measurement columns (MF_L in MF_L_csa_mm2)",
    "color": "display colour, hexadecimal #rrggbb"}.items()}


def tsv_text(rows: Sequence[Mapping]) -> str:
    """BIDS TSV: a header, tab-separated cells, ``n/a`` for missing values, ``true``/``false``
    for booleans, text on one line and made inert for spreadsheets (see :mod:`.export`)."""
    cols = columns_of(rows)
    lines = ["\t".join(cols)] + ["\t".join(_cell(r.get(c)) for c in cols) for r in rows]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return "n/a"
    if isinstance(value, int | float | np.integer | np.floating):
        return str(value)
    text = " ".join(str(value if value is not None else "").split())
    return inert_text(text) if text else "n/a"


_MUSCLES = {"PS": "psoas", "MF": "multifidus", "ES": "erector spinae"}
_S = "(?P<s>" + "|".join(lab.short for lab in LABELS) + ")"
_BOOL = {"true": "yes", "false": "no"}
#: Columns by name: description, units (None: none), levels.
_EXACT: dict[str, tuple[str, str | None, dict | None]] = {
    "case": ("case id from the input's file name (never from headers)", None, None),
    "status": ("how the slice was measured", None, {
        "segmented": "labelled by the model", "read": "read (labels given with --labels)",
        "failed": "could not be used; the reason is in notes"}),
    "slice": ("index of the slice in its input (0-based)", None, None),
    "slice_position_mm": ("position of the slice along the slice normal", "mm", None),
    "rows": ("number of pixel rows of the slice", None, None),
    "cols": ("number of pixel columns of the slice", None, None),
    "spacing_col_mm": ("distance between neighbouring columns (pixel width)", "mm", None),
    "spacing_row_mm": ("distance between neighbouring rows (pixel height)", "mm", None),
    "slice_thickness_mm": ("slice thickness (spacing along the normal)", "mm", None),
    "pixel_area_mm2": ("area of one pixel", "mm^2", None),
    "orientation": ("where columns and rows run in the patient (LPS letters; LP is the "
                    "radiological view)", None, None),
    "notes": ("notes on reading and measuring the slice, or why it failed", None, None),
    "label_source": ("the labels' origin: 'model <name> v<version>' or 'given'", None, None),
    "level": ("spinal level of the slice (from the atlas registration or counted from the "
              "discs of a stack); unknown when it cannot be told", None, None),
    "mid_disc": ("whether the slice is the mid-disc slice of its level", None, _BOOL),
    "level_note": ("why the level could not be counted", None, None),
    "registration_flagged": ("whether the quality check flags the slice for review", None,
                             _BOOL),
    "registration_check": ("why the quality check flagged the slice", None, None),
    "registration_correlation": ("correlation of the slice with the registered atlas (empty "
                                 "where no fit was made)", None, None),
    "seconds": ("time to segment the slice", "s", None),
    "fat_method": ("fat separation method: calibrated, kmeans, gmm, otsu or gmm3", None, None),
    "fat_contrast": ("whether fat is bright or dark in the slice (told from the slice or "
                     "given); unknown", None, None),
}
_PATTERNS: tuple[tuple[str, str, str | None], ...] = (
    (rf"{_S}_csa_mm2", "cross-sectional area of the {name} on the native grid: pixel count "
                       "× pixel area", "mm^2"),
    (r"(?P<m>PS|MF|ES)_asym_pct", "left-right asymmetry of the {name}: "
                                  "100·(L−R)/mean(L, R)", "%"),
    (rf"{_S}_lean_csa_mm2", "area of muscle (not fat) inside the {name}", "mm^2"),
    (rf"{_S}_fat_csa_mm2", "area of fat inside the {name}", "mm^2"),
    (rf"{_S}_fat_pct", "fat percentage of the {name}: 100 × fat area / area", "%"),
    (rf"{_S}_fat_flag", "why no fat percentage of the {name} was measured: too small, absent, "
                        "not bimodal, no fat reference or fat contrast unknown", None),
    (rf"{_S}_ff_pct", "Dixon fat fraction of the {name}: 100 × mean F/(W+F) over its valid "
                      "pixels", "%"),
    (rf"{_S}_ff_pixels_excluded", "pixels of the {name} left out of the Dixon fat fraction "
                                  "as noise", None),
)
_FALLBACK = "see the napari-paraspinal README, Measurements"


def column_description(column: str) -> dict | None:
    """A measurement column's BIDS description (``Description``, ``Units``, ``Levels``), or
    None for a column this module does not know."""
    text, units, levels = _EXACT.get(column) or _by_pattern(column) or (None, None, None)
    if text is None:
        return None
    out = {"Description": text[0].upper() + text[1:], "Units": units, "Levels": levels}
    return {k: v for k, v in out.items() if v}


def _by_pattern(column: str) -> tuple[str, str | None, None] | None:
    for pattern, template, units in _PATTERNS:
        m = re.fullmatch(pattern, column)
        if m:
            s = m.groupdict().get("s")
            name = f"{BY_SHORT[s].name} ({s})" if s else _MUSCLES[m["m"]]
            return template.format(name=name), units, None
    return None


def morph_sidecar(columns: Sequence[str], method: Mapping, sources: Sequence[str]) -> dict:
    """The JSON sidecar of a measurements TSV: what it holds, its sources, the software and
    method, and every column's description."""
    side: dict = {"Description": "Measurements of the lumbar paraspinal muscles, one row per "
                                 "slice (the case's rows of measurements.csv)",
                  "Sources": list(sources), "SoftwareName": SOFTWARE,
                  "SoftwareVersion": __version__, "Method": dict(method)}
    for column in columns:
        side[column] = column_description(column) or {"Description": _FALLBACK}
    return side
