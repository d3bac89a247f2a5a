"""The main job's one per-case function: an input (a slice, a stack or a Dixon pair) read,
checked, segmented or given its labels, measured, and its label map and overlays written.

:func:`process_case` is what a batch (:mod:`.run_batch`), a Dask task (:mod:`.cluster`) and
the GUIs run for a case; :class:`RunConfig` is the one set of settings they share.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from threading import Event

import numpy as np

from .case_input import CaseSlice, DixonRef, dixon_slice_count, read_case_slice, slice_columns
from .core.errors import InputError
from .core.io import InputRef, image_stem, list_slices, read_labels
from .core.names import safe_id
from .core.volume import StackGrid, stack_grid, write_label_volume
from .core.writers import write_labels
from .dixon import dixon_columns
from .fat import FatConfig
from .level_args import LevelAnchor
from .levels import UNKNOWN, assign_levels
from .measure import geometry_columns, measure_slice
from .overlay import save_overlay_png
from .plausibility import check_row
from .preprocess.n4 import N4Config
from .run_output import writing
from .segment import Model, default_model_path, segment_many
from .sides import DEFAULT as SIDES_DEFAULT

NoticeFn = Callable[[str], None]


@dataclass
class CaseResult:
    """What happened to one input: one row per slice measured (one for a 2-D image)."""

    case: str
    source: str
    status: str  # "ok" or "failed"
    message: str = ""
    rows: list[dict] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    label_status: str = "none"  # "given" (--labels), "automatic" (the model) or "none"
    identifiers: dict[str, str] = field(default_factory=dict)  # only when asked for
    finished: str = ""  # when the case ended (ISO time)

    @property
    def row(self) -> dict:
        """The first slice's row (the only one of a 2-D input)."""
        return self.rows[0] if self.rows else {}


@dataclass(frozen=True)
class RunConfig:
    """Settings of a batch run."""

    out_dir: Path
    slices: Sequence[int] | None = None  # slices of 3-D inputs (None: every slice)
    spacing: tuple[float, float] | None = None
    overlays: bool = True
    labels_dir: Path | None = None  # existing label maps (same file names) to measure
    fat: FatConfig = field(default_factory=FatConfig)
    n4: N4Config | None = field(default_factory=N4Config)  # bias correction before fat
    model: Path | None = None  # model bundle (None: the shipped one, when installed)
    level: str = "auto"  # spinal level for the atlas, or detected
    device: str = "auto"
    identifiers: bool = False  # DICOM patient id, name and study date on the provenance sheet
    levels: Sequence[str] | None = None  # keep only the mid-disc slices of these disc levels
    level_anchors: Sequence[LevelAnchor] = ()  # levels the user gives (:func:`anchor_for`)
    sides: str = SIDES_DEFAULT  # left/right from the spine's midline, or the network's own
    mirror: bool = True  # average the network with its view of the mirrored slice
    precision: str = "float32"  # the network's arithmetic ("bfloat16": faster, see README)
    bids: bool = False  # also a BIDS derivatives dataset in out_dir (:mod:`.bids`)
    dixon_pairing: bool = True  # pair Dixon water/fat series of a DICOM study (:mod:`.dixon_dicom`)
    cluster: str | None = None  # run the cases on Dask: "local" or a scheduler address
    workers: int | None = None  # worker processes of a local cluster (None: one per core)
    resume: bool = False  # keep the cases a previous run in out_dir finished (:mod:`.run_resume`)


Source = InputRef | DixonRef


def case_id(ref: Source, taken: set[str]) -> str:
    """A short, file-system-safe id for a case from its file name (:func:`safe_id`; never
    patient data from headers), unique in ``taken`` ignoring case (as file systems may)."""
    path = ref.water.path if isinstance(ref, DixonRef) else ref.path
    base = safe_id(image_stem(path))
    cid, n = base, 2
    while cid.casefold() in taken:
        cid, n = f"{base}_{n}", n + 1
    taken.add(cid.casefold())
    return cid


def case_slices(ref: Source, config: RunConfig) -> list[int]:
    """The slice indices of an input that a run measures (every one unless chosen)."""
    count = dixon_slice_count(ref) if isinstance(ref, DixonRef) else len(list_slices(ref))
    if config.slices is None:
        return list(range(count))
    outside = [k for k in config.slices if not 0 <= k < count]
    if outside:
        raise InputError(str(ref), f"has {count} slices (0–{count - 1}); slice "
                                   f"{outside[0]} does not exist")
    return list(config.slices)


def process_case(ref: Source, cid: str, config: RunConfig, model: Model | None = None,
                 on_slice: Callable[[int], None] | None = None,
                 cancel: Event | None = None) -> CaseResult:
    """Read and check one input (a slice, a stack or a Dixon pair), segment each chosen slice
    (or read its given labels), measure, and write the labels on the input's own grid.

    A 3-D input gives one row per slice and one label volume; a slice that cannot be used
    gets a failed row naming the problem and the others go on.
    """
    indices, stack = layout(ref, config)
    grid = stack_grid(_main_ref(ref)) if stack else None  # an uneven stack fails here
    result = CaseResult(case=cid, source=str(ref), status="ok")
    images: dict[int, CaseSlice] = {}
    for k in indices:
        try:
            images[k] = read_case_slice(ref, k, config.spacing)
        except InputError as err:
            result.rows.append(_failed_row(cid, k, err))
    if not images:
        raise InputError(str(ref), result.rows[0]["notes"] if result.rows else "no slices")
    first = next(iter(images.values())).image
    if config.identifiers:
        result.identifiers = {k: str(first.meta.get(k, ""))
                              for k in ("patient_id", "patient_name", "study_date")}
    maps: dict[int, np.ndarray] = {}
    # Measuring and drawing a slice run beside the model's next batch: they are mostly
    # single-threaded, so in line they would leave a core idle. A slice counts as done
    # (``on_slice``) once segmented, so that a cancel is seen before the next batch.
    pending: deque[Future[dict]] = deque()
    with ThreadPoolExecutor(1) as pool:
        for k, labels, extra in _labels_of(ref, images, config, model, result, cancel):
            if labels is not None:
                maps[k] = labels
            pending.append(pool.submit(_slice_row, cid, k, images[k], labels, extra, config,
                                       stack))
            while pending and pending[0].done():
                result.rows.append(pending.popleft().result())
            if on_slice is not None:
                on_slice(k)
        result.rows.extend(row.result() for row in pending)
    result.rows.sort(key=lambda r: r.get("slice", 0))
    if grid is not None and result.label_status in ("automatic", "given"):
        count_levels(result.rows, grid, anchor_for(config.level_anchors, cid))
    if maps:
        path = labels_path(config, cid)
        with writing(path):
            result.outputs["labels"] = _write_labels(maps, images, grid, path)
    if config.overlays and (config.out_dir / "overlays").is_dir():
        result.outputs["overlays"] = config.out_dir / "overlays"
    return result


def _slice_row(cid: str, k: int, item: CaseSlice, labels: np.ndarray | None, extra: dict,
               config: RunConfig, stack: bool) -> dict:
    """A slice's row: its geometry, areas, fat and Dixon columns and QC; its overlay
    written."""
    bias, body = extra.pop("bias", None), extra.pop("body", None)  # never in the row
    if config.n4 is None:
        bias = None
    # water + fat: fat is bright by construction, no need to detect it
    fat = replace(config.fat, fat_is_bright=True) if item.water is not None else config.fat
    row = {"case": cid, "status": "read", **slice_columns(item.image),
           **geometry_columns(item.image.geometry), "notes": "; ".join(item.notes), **extra}
    path = config.out_dir / "overlays" / overlay_name(cid, k, stack)
    if labels is not None:
        measured = measure_slice(item.image, labels, fat, n4=config.n4, bias=bias, body=body)
        row.update(measured.row)
        if item.water is not None:
            row.update(dixon_columns(item.water, item.fat, labels, item.image.geometry))
        if config.overlays:
            with writing(path):
                save_overlay_png(item.image, labels, path, fat_mask=measured.fat_mask)
    elif config.overlays and not stack:
        with writing(path):
            save_overlay_png(item.image, None, path)
    check_row(row, item.image.geometry)
    return row


def anchor_for(anchors: Sequence[LevelAnchor], cid: str) -> LevelAnchor | None:
    """The anchor a case takes: the one naming it, else one naming no case."""
    named = [a for a in anchors if a.case is not None and a.case.casefold() == cid.casefold()]
    return (named or [a for a in anchors if a.case is None] or [None])[0]


def count_levels(rows: list[dict], grid: StackGrid, anchor: LevelAnchor | None = None
                 ) -> None:
    """Name each slice's level by counting the discs of its labels (the model's or given
    ones) up from the sacrum, or from the user's ``anchor`` (:mod:`.levels`); ``unknown``
    with the reason in ``level_note`` where that cannot be done. Only rows whose level is
    not known otherwise (the body frame, given labels) are named."""
    ok = [r for r in rows if (r.get("status") == "segmented" or r.get("label_source") == "given")
          and r.get("level", UNKNOWN) == UNKNOWN]
    if len(ok) < 2:
        return
    up = 1.0 if grid.normal[2] >= 0 else -1.0  # positions toward the patient's head
    at = None
    if anchor is not None:
        where = [i for i, r in enumerate(ok) if r.get("slice") == anchor.slice]
        if not where:
            why = (f"level anchor {anchor.slice}={anchor.level}: slice {anchor.slice} is not "
                   "a segmented slice of this run")
            for r in ok:
                r["level"], r["level_note"] = UNKNOWN, why
            return
        at = (where[0], anchor.level)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            levels = assign_levels([r.get("DI_csa_mm2") or 0.0 for r in ok],
                                   [up * r["slice_position_mm"] for r in ok], anchor=at)
    except ValueError as err:
        for r in ok:
            r["level"], r["level_note"] = UNKNOWN, _stack_index(str(err), at, anchor)
        return
    doubt = "; ".join(_stack_index(str(w.message), at, anchor) for w in caught)
    for r, lv in zip(ok, levels, strict=True):
        r["level"], r["mid_disc"] = lv.level, lv.mid_disc
        if lv.reason or doubt:
            r["level_note"] = "; ".join(x for x in (lv.reason, doubt) if x)


def _stack_index(message: str, at: tuple[int, str] | None, anchor: LevelAnchor | None
                 ) -> str:
    """:mod:`.levels` names the anchor by its place among the counted rows; the user gave
    the stack's slice index."""
    if at is None or anchor is None:
        return message
    return message.replace(f"anchor slice {at[0]}", f"anchor slice {anchor.slice}").replace(
        f"at slice {at[0]}", f"at slice {anchor.slice}")


def _main_ref(ref: Source) -> InputRef:
    return ref.water if isinstance(ref, DixonRef) else ref


def _labels_of(ref: Source, images: dict[int, CaseSlice], config: RunConfig,
               model: Model | None, result: CaseResult, cancel: Event | None
               ) -> Iterator[tuple[int, np.ndarray | None, dict]]:
    """Per slice, as soon as it is ready: its label map (given, from the model, or none)
    and the row columns that say where it came from. A slice the model cannot use gets a
    failed row instead; ``cancel`` stops between the model's batches."""
    if config.labels_dir is not None:
        result.label_status = "given"
        path = config.labels_dir / _main_ref(ref).path.name
        for k, item in images.items():
            notes: list[str] = []  # e.g. values of another label convention
            labels = read_labels(path, item.image.geometry, notes=notes)
            item.notes.extend(n for n in notes if n not in item.notes)
            yield k, labels, {"label_source": "given"}
        return
    if model is None:
        for k in images:
            yield k, None, {}
        return
    result.label_status = "automatic"
    keys = list(images)
    source = f"model {model.card.name} v{model.card.version}"
    for n, seg in segment_many([images[k].image for k in keys], model, config.level,
                               cancel=cancel):
        k = keys[n]
        if isinstance(seg, InputError):
            result.rows.append(_failed_row(result.case, k, seg))
            continue
        reg = seg.preprocessed.registration
        yield k, seg.labels, {"status": "segmented", "label_source": source,
                              "level": reg.level, **reg.qc_columns(),
                              "seconds": round(seg.seconds["total"], 3),
                              "bias": seg.preprocessed.bias, "body": seg.preprocessed.mask}


def _failed_row(cid: str, k: int, err: InputError) -> dict:
    return {"case": cid, "slice": k, "status": "failed", "notes": err.problem}


def _write_labels(maps: dict[int, np.ndarray], images: dict[int, CaseSlice],
                  grid: StackGrid | None, path: Path) -> Path:
    """A 2-D input's labels on its grid; a stack's as one volume on the stack's grid (slices
    not segmented stay 0)."""
    if grid is None:
        ((k, labels),) = maps.items()
        return write_labels(labels, images[k].image.geometry, path)
    volume = np.zeros((grid.count, *grid.first.shape), np.uint8)
    for k, labels in maps.items():
        volume[k] = labels
    return write_label_volume(volume, grid, path)


def model_available(config: RunConfig) -> bool:
    """Whether a run segments with a model: no ``--labels`` and a model given or shipped."""
    return config.labels_dir is None and (config.model is not None
                                          or default_model_path().is_dir())


def labels_path(config: RunConfig, cid: str) -> Path:
    """Where a case's label map is written."""
    return config.out_dir / "labels" / f"{cid}.nii.gz"


def overlay_name(cid: str, k: int, stack: bool) -> str:
    """File name of a slice's overlay (a stack's carry the slice index)."""
    return f"{cid}_{k:03d}.png" if stack else f"{cid}.png"


def layout(ref: Source, config: RunConfig) -> tuple[list[int], bool]:
    """The slices a run measures, and whether the input is a stack (several slices)."""
    indices = case_slices(ref, config)
    return indices, isinstance(ref, DixonRef) or len(list_slices(_main_ref(ref))) > 1


