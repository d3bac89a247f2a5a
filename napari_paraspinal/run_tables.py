"""The measurements table and its provenance sheet of a batch run (:mod:`.pipeline`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .measure import method_provenance

if TYPE_CHECKING:
    from .pipeline import CaseResult, RunConfig
    from .segment import Model


def table_sheets(results: Sequence[CaseResult], config: RunConfig,
                 model: Model | None = None) -> dict[str, list[dict]]:
    """The measurements table (one row per slice) and its provenance sheet (one per case).

    Provenance names the software, the labels' origin and status (``automatic`` from the
    model, ``given`` from ``--labels``), the model with its weights' hash and preprocessing,
    the registration QC, bias correction and fat method, so every number can be traced. No
    patient identifier is written unless ``config.identifiers`` asks for them; case ids come
    from file names.
    """
    rows = [row for r in results for row in r.rows]
    provenance = [
        {
            "case": r.case,
            "source": r.source,
            "status": r.status,
            "message": r.message,
            **method_provenance(config.n4, config.fat),
            "labels": r.row.get("label_source", "none"),
            "label_status": r.label_status,
            **_model_provenance(model if r.label_status == "automatic" else None),
            "qc_flags": json.dumps({f"slice {row.get('slice', 0)}": row["registration_check"]
                                    for row in r.rows if row.get("registration_flagged")}),
            "time": r.finished,
            **r.identifiers,
        }
        for r in results
    ]
    return {"measurements": rows, "provenance": provenance}


def _model_provenance(model: Model | None) -> dict[str, str]:
    if model is None:
        return {"model": "", "model_weights_sha256": "", "preprocessing": ""}
    card = model.card
    # the settings run: the card's atlases and space, with the loaded model's N4,
    # normalisation and registration (this version's registration, see load_model)
    run = {**card.preprocessing, **model.preprocess.to_dict()}
    return {"model": f"{card.name} v{card.version}", "model_weights_sha256": card.weights_sha256,
            "preprocessing": json.dumps(run)}
