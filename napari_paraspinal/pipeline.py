"""The main job: inputs in; per case outputs and one measurements table out.

Each case is read and checked; a bad case is reported and the batch goes on. The work is a
plain function reporting progress through a callback and honouring a cancel flag, so the
CLI, the napari plugin and the app all run the same code.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from threading import Event

from .core.errors import InputError
from .core.io import (
    InputRef,
    expand_inputs,
    image_stem,
    read_labels,
    read_slice,
    validate_slice,
)
from .core.writers import write_labels
from .export import write_csv, write_xlsx
from .fat import FatConfig
from .measure import geometry_columns, measure_slice, method_provenance
from .overlay import save_overlay_png
from .preprocess.n4 import N4Config
from .segment import Model, default_model_path, load_model, segment_slice

ProgressFn = Callable[[int, int, str], None]


@dataclass
class CaseResult:
    """What happened to one input."""

    case: str
    source: str
    status: str  # "ok" or "failed"
    message: str = ""
    row: dict = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    label_status: str = "none"  # "given" (--labels), "automatic" (the model) or "none"
    identifiers: dict[str, str] = field(default_factory=dict)  # only when asked for


@dataclass
class RunConfig:
    """Settings of a batch run."""

    out_dir: Path
    slice_index: int | None = None
    spacing: tuple[float, float] | None = None
    overlays: bool = True
    labels_dir: Path | None = None  # existing label maps (same file names) to measure
    fat: FatConfig = field(default_factory=FatConfig)
    n4: N4Config | None = field(default_factory=N4Config)  # bias correction before fat
    model: Path | None = None  # model bundle (None: the shipped one, when installed)
    level: str = "auto"  # spinal level for the atlas, or detected
    device: str = "auto"
    identifiers: bool = False  # DICOM patient id, name and study date on the provenance sheet


def case_id(ref: InputRef, taken: set[str]) -> str:
    """A short, file-system-safe, unique id for a case (never patient data from headers)."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", image_stem(ref.path)).strip("_") or "case"
    cid, n = base, 2
    while cid in taken:
        cid, n = f"{base}_{n}", n + 1
    taken.add(cid)
    return cid


def process_case(ref: InputRef, cid: str, config: RunConfig,
                 model: Model | None = None) -> CaseResult:
    """Read and check one input, segment it (or read its given labels), measure, write."""
    image = read_slice(ref, index=config.slice_index, spacing=config.spacing)
    validate_slice(image)
    g = image.geometry
    row = {"case": cid, "status": "read", **geometry_columns(g), "notes": "; ".join(image.notes)}
    result = CaseResult(case=cid, source=str(ref), status="ok", row=row)
    if config.identifiers:
        result.identifiers = {k: str(image.meta.get(k, ""))
                              for k in ("patient_id", "patient_name", "study_date")}
    labels = fat_mask = None
    if config.labels_dir is not None:
        labels = read_labels(config.labels_dir / ref.path.name, g)
        row["label_source"] = "given"
        result.label_status = "given"
        measured = measure_slice(image, labels, config.fat, n4=config.n4)
        row.update(measured.row)
        fat_mask = measured.fat_mask
    elif model is not None:
        seg = segment_slice(image, model, config.level)
        labels = seg.labels
        reg = seg.preprocessed.registration
        row["status"] = "segmented"
        result.label_status = "automatic"
        row["label_source"] = f"model {model.card.name} v{model.card.version}"
        row.update(level=reg.level, **reg.qc_columns(), seconds=round(seg.seconds["total"], 3))
        bias = seg.preprocessed.bias if config.n4 is not None else None
        measured = measure_slice(image, labels, config.fat, bias=bias)
        row.update(measured.row)
        fat_mask = measured.fat_mask
    if labels is not None:
        result.outputs["labels"] = write_labels(labels, g, config.out_dir / "labels"
                                                / f"{cid}.nii.gz")
    if config.overlays:
        path = config.out_dir / "overlays" / f"{cid}.png"
        result.outputs["overlay"] = save_overlay_png(image, labels, path, fat_mask=fat_mask)
    return result


def run(
    inputs: Sequence[str | Path],
    config: RunConfig,
    progress: ProgressFn | None = None,
    cancel: Event | None = None,
) -> list[CaseResult]:
    """Process every input, then write ``measurements.xlsx`` and ``measurements.csv``.

    Inputs that cannot be read are reported as failed rows; the others still run. Setting
    ``cancel`` stops before the next case; what finished is still written.
    """
    refs = expand_inputs(inputs)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    model = None
    if config.labels_dir is None and (config.model is not None or
                                      default_model_path().is_dir()):
        model = load_model(config.model, config.device)
    taken: set[str] = set()
    results: list[CaseResult] = []
    for n, ref in enumerate(refs):
        if cancel is not None and cancel.is_set():
            break
        cid = case_id(ref, taken)
        if progress:
            progress(n, len(refs), str(ref))
        try:
            results.append(process_case(ref, cid, config, model))
        except InputError as err:
            results.append(CaseResult(case=cid, source=str(ref), status="failed",
                                      message=str(err), row={"case": cid, "status": "failed",
                                                             "notes": err.problem}))
    if progress:
        progress(len(results), len(refs), "writing tables")
    write_tables(results, config, model)
    return results


def write_tables(results: Sequence[CaseResult], config: RunConfig,
                 model: Model | None = None) -> None:
    """The measurements table (one row per case) and its provenance sheet.

    Provenance names the software, the labels' origin and status (``automatic`` from the
    model, ``given`` from ``--labels``), the model with its weights' hash and preprocessing,
    the registration QC, bias correction and fat method, so every number can be traced. No
    patient identifier is written unless ``config.identifiers`` asks for them; case ids come
    from file names.
    """
    rows = [r.row for r in results]
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
            "qc_flags": json.dumps({k: r.row[k] for k in ("registration_flagged",
                                                          "registration_check")
                                    if k in r.row}),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **r.identifiers,
        }
        for r in results
    ]
    write_xlsx({"measurements": rows, "provenance": provenance},
               config.out_dir / "measurements.xlsx")
    write_csv(rows, config.out_dir / "measurements.csv")


def _model_provenance(model: Model | None) -> dict[str, str]:
    if model is None:
        return {"model": "", "model_weights_sha256": "", "preprocessing": ""}
    card = model.card
    # the settings run: the card's atlases and space, with the loaded model's N4,
    # normalisation and registration (this version's registration, see load_model)
    run = {**card.preprocessing, **model.preprocess.to_dict()}
    return {"model": f"{card.name} v{card.version}", "model_weights_sha256": card.weights_sha256,
            "preprocessing": json.dumps(run)}
