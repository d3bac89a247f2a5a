"""Plausibility of a measured slice: pixel spacing, plane and areas a human body can have.

Why: a wrong header (9.9 mm pixels) or a typo (``--spacing 8`` for 0.8) scales every area
by the square of the error and nothing else in the chain notices; psoas areas of 50,000 mm²
were reported as ``ok``. The checks here do not try to correct anything; they add reasons
to the row's QC flag (the ``registration_flagged`` / ``registration_check`` columns that
the terminal summary, the provenance sheet and the project all read), so the numbers carry
the warning wherever they go.

Ranges (mm², one side) and where they come from (``../shared/data/README.md`` describes
the data; areas are pixel counts x pixel area on the files' own grids):

- MF, ES: 411 manual one-slice L4-L5 label maps (``mri515_t2_labels``, 0.6875 mm pixels):
  MF 449-1855, ES 542-2393 mm² (1st-99th percentile MF 557-1457, ES 701-2225); every
  slice of ``lpm_tum01`` (manual, L2-L5) and ``musclemap_sub0001`` (model output): MF
  230-1358, ES 58-2109 (58 at the sacrum, where ES thins to an aponeurosis).
  High bound: about twice the largest real value. Low bound for MF only: under half the
  smallest real one (ES and psoas legitimately taper to almost nothing at the ends of the
  lumbar spine; "not found" below 60 mm² is :mod:`.seg_qc`'s rule).
- MF + ES, both sides together (when any is labelled): 2918-7166 in the 411 maps,
  1758 at the sacral end of ``musclemap_sub0001``; bounds about half and twice that.
- PS: ``musclemap_sub0001`` reaches 1066 mm²; published adult psoas CSA at L4-L5 is at
  most about 3000 mm² (young men, athletes); the bound is twice that.
- DI, SP (disc, posterior elements): not in the real label maps; adult lumbar discs are
  under about 2500 mm² in published series, the phantoms give 630-1553 mm² for both; a
  generous 5000 mm² for both (they mainly catch a wrong spacing, as every bound does).
- Pixel spacing: clinical axial MRI and CT use 0.2-3 mm pixels; outside that the header
  (or the typed ``--spacing``) is almost surely wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence

import numpy as np

from .core.geometry import Geometry
from .core.labels import LABELS, NUM_CLASSES
from .core.orientation import not_axial_reason

#: Plausible in-plane pixel spacing (mm), both axes.
SPACING_MM = (0.2, 3.0)
#: Plausible area (mm²) of each structure on one side, when present: (low, high).
AREA_MM2: dict[str, tuple[float, float]] = {
    "SP": (0.0, 5000.0),
    "DI": (0.0, 5000.0),
    "PS": (0.0, 6000.0),
    "MF": (100.0, 4000.0),
    "ES": (0.0, 5000.0),
}
#: Plausible area (mm²) of MF and ES of both sides together, when any is present.
PARASPINAL_MM2 = (800.0, 14000.0)

#: The row columns that carry a slice's QC flag and its reasons.
FLAG, CHECK = "registration_flagged", "registration_check"


def spacing_reason(geometry: Geometry) -> str | None:
    """A reason when the in-plane pixel spacing is outside :data:`SPACING_MM`."""
    sx, sy = (float(s) for s in geometry.spacing[:2])
    lo, hi = SPACING_MM
    if lo <= sx <= hi and lo <= sy <= hi:
        return None
    return (f"pixel spacing {sx:g} × {sy:g} mm outside {lo:g}–{hi:g} mm: check the header "
            "or --spacing; areas scale with its square")


def area_reasons(areas: Mapping[str, float]) -> list[str]:
    """Reasons for areas (mm², keyed by label short name, e.g. ``"PS_L"``) outside their
    plausible range; absent structures (0 or missing) are not judged here."""
    reasons = []
    for short, area in areas.items():
        muscle = short.split("_")[0]
        if muscle not in AREA_MM2 or not area:
            continue
        lo, hi = AREA_MM2[muscle]
        if area > hi:
            reasons.append(f"{short} area {area:.0f} mm² above plausible {hi:.0f} mm²")
        elif area < lo:
            reasons.append(f"{short} area {area:.0f} mm² below plausible {lo:.0f} mm²")
    total = sum(float(areas.get(s) or 0.0) for s in ("MF_L", "MF_R", "ES_L", "ES_R"))
    lo, hi = PARASPINAL_MM2
    if total and not lo <= total <= hi:
        side = "above" if total > hi else "below"
        bound = hi if total > hi else lo
        reasons.append(f"MF+ES area {total:.0f} mm² {side} plausible {bound:.0f} mm²")
    return reasons


def plausibility_reasons(geometry: Geometry, areas: Mapping[str, float] | None = None
                         ) -> list[str]:
    """Every plausibility reason for a slice: spacing, plane, and areas when given."""
    reasons = [r for r in (spacing_reason(geometry), not_axial_reason(geometry)) if r]
    return reasons + area_reasons(areas or {})


def label_areas(labels: np.ndarray, geometry: Geometry) -> dict[str, float]:
    """Area (mm²) of every label, keyed by short name, for :func:`plausibility_reasons`."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=NUM_CLASSES)
    return {lab.short: float(counts[lab.value] * geometry.pixel_area_mm2) for lab in LABELS}


def row_areas(row: Mapping[str, object]) -> dict[str, float]:
    """The ``<short>_csa_mm2`` columns of a measurement row (empty when not measured)."""
    out = {}
    for lab in LABELS:
        value = row.get(f"{lab.short}_csa_mm2")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[lab.short] = float(value)
    return out


def add_reasons(row: MutableMapping[str, object], reasons: Sequence[str]) -> MutableMapping:
    """Add ``reasons`` to the row's QC flag columns (kept, not replaced; no repeats)."""
    have = [r for r in str(row.get(CHECK) or "").split("; ") if r]
    new = [r for r in dict.fromkeys(reasons) if r not in have]
    if new:
        row[FLAG] = True
        row[CHECK] = "; ".join(have + new)
    return row


def check_row(row: MutableMapping[str, object], geometry: Geometry) -> MutableMapping:
    """Flag a measurement row whose spacing, plane or areas are implausible (in place).

    A row that passes is left as it is.
    """
    return add_reasons(row, plausibility_reasons(geometry, row_areas(row)))
