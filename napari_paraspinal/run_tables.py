"""The measurements table and its provenance sheet of a batch run (:mod:`.pipeline`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .core.config import config_to_dict
from .levels import UNKNOWN, level_summary, select_levels
from .provenance import provenance_row

if TYPE_CHECKING:
    from .pipeline import CaseResult, RunConfig
    from .segment import Model


def table_sheets(results: Sequence[CaseResult], config: RunConfig,
                 model: Model | None = None) -> dict[str, list[dict]]:
    """The measurements table (one row per slice), its provenance sheet (one per case) and,
    where slices' levels are known, a per-level summary (:func:`level_sheet`).

    With ``config.levels`` the table keeps only the mid-disc slices of those levels
    (:func:`.levels.select_levels`) and provenance names the levels a case has none of.

    Provenance (:mod:`.provenance`, the same schema on every path) names the software, the
    labels' origin and status (``automatic`` from the model, ``given`` from ``--labels``), the
    model with its weights' hash and preprocessing, the registration QC, bias correction and
    fat method, so every number can be traced. No patient identifier is written unless
    ``config.identifiers`` asks for them; case ids come from file names.
    """
    rows = [row for r in results for row in r.rows]
    levels = level_sheet(rows)
    missing: dict[str, list[str]] = {}
    if config.levels:
        rows, missing = select_levels(rows, config.levels)
    provenance = [
        provenance_row(
            {"case": r.case, "source": r.source, "status": r.status, "message": r.message,
             "labels": r.row.get("label_source", "none"), "label_status": r.label_status,
             **_model_provenance(model if r.label_status == "automatic" else None),
             "qc_flags": json.dumps({f"slice {row.get('slice', 0)}": row["registration_check"]
                                     for row in r.rows if row.get("registration_flagged")}),
             "time": r.finished},
            config.n4, config.fat,
            **({"levels_not_found": ",".join(missing.get(r.case, []))} if config.levels
               else {}),
            **r.identifiers)
        for r in results
    ]
    sheets = {"measurements": rows, "provenance": provenance}
    if levels:
        sheets["levels"] = levels
    return sheets


def level_sheet(rows: Sequence[dict]) -> list[dict]:
    """Per stack and known level (superior first): the number of slices, the mean of every
    area and percentage over them and its value at the mid-disc slice (``*_mid``); empty
    when no stack has two slices of known level."""
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("status") != "failed" and row.get("level", UNKNOWN) != UNKNOWN:
            by_case.setdefault(str(row.get("case", "")), []).append(row)
    out = []
    for case, members in by_case.items():
        if len(members) < 2:  # a single slice: the table's row says it all
            continue
        columns = [c for c in members[0] if c.endswith(("_mm2", "_pct"))]
        out += [{"case": case, **summary} for summary in level_summary(members, columns)]
    return out


def _model_provenance(model: Model | None) -> dict[str, str]:
    if model is None:
        return {"model": "", "model_weights_sha256": "", "preprocessing": "", "inference": ""}
    card = model.card
    # the settings run: the card's atlases and space, with the loaded model's N4,
    # normalisation and registration (this version's registration, see load_model)
    run = {**card.preprocessing, **config_to_dict(model.preprocess)}
    return {"model": f"{card.name} v{card.version}", "model_weights_sha256": card.weights_sha256,
            "preprocessing": json.dumps(run),
            "inference": json.dumps({"sides": model.sides, "mirror": model.mirror,
                                     "precision": model.precision})}
