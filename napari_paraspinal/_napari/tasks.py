"""The work behind the Segment and Fat & areas widgets, as plain functions (no Qt).

Widgets only collect settings, start these in a worker thread and show what comes back.
:func:`segment_planes` is a generator that yields a :class:`..jobs.Progress` (a
:class:`SegmentStep`, with the plane's result) after every slice, so a caller can show
progress and stop between slices; :func:`measure_plane` runs the core's ``measure_slice``.

A slice the core's QC flags (the segmentation's ``registration.flagged`` / ``.reasons``, and
the plausibility of the measured areas) is marked wherever its numbers are shown: the step's
message says ``CHECK: <reasons>`` and measured rows carry the command line's
``registration_flagged`` / ``registration_check`` columns.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import InputError
from ..core.geometry import SliceImage
from ..core.labels import BY_VALUE, FAT_LABELS, LABELS
from ..core.slices import parse_slices
from ..fat import DEFAULT_METHOD, FatConfig
from ..jobs import Cancel, Progress
from ..measure import SliceMeasurement, measure_slice
from ..plausibility import CHECK, FLAG, check_row
from ..preprocess.n4 import N4Config, n4_correct
from ..segment import Segmentation, load_model, segment_many, uncertainty
from .slices import check_text

#: The QC columns of a measurement row, as the command line writes them.
QC_COLUMNS = (FLAG, CHECK, "registration_correlation")


@dataclass(frozen=True)
class SegmentStep(Progress):
    """Progress of a segmentation run (stage ``model`` once the model is loaded, then
    ``segment`` per plane); ``segmentation`` is set when a plane is done, with ``display``
    (its labels in the display orientation, uint8), ``level`` and the asked-for maps (``bias``,
    ``uncertainty``: float32, display orientation), made in the worker, not the GUI."""

    model: str = ""
    plane: int | None = None
    segmentation: Segmentation | None = None
    error: str = ""
    qc: dict = field(default_factory=dict)  # the plane's QC columns (:func:`segmentation_qc`)
    display: np.ndarray | None = None
    level: str | None = None  # the level the plane was segmented at
    bias: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


def segment_planes(
    slices: Sequence[SliceImage],
    planes: Sequence[int],
    model_path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    level: str = "auto",
    cancel: Cancel | None = None,
    display: Callable[[np.ndarray], np.ndarray] | None = None,
    maps: Sequence[str] = (),
) -> Iterator[SegmentStep]:
    """Load the model, then segment ``slices[k]`` for every ``k`` in ``planes``, one at a time.

    Yields once when the model is loaded and once per plane (the network runs on a few
    planes at a time). A plane the chain cannot use yields its error and the run goes on;
    setting ``cancel`` stops before the next few planes. ``display`` turns a native plane
    into the display orientation (default: unchanged); ``maps`` asks for ``"bias"`` and/or
    ``"uncertainty"`` planes as well.
    """
    show = display or (lambda a: a)
    total = len(planes)
    model = load_model(model_path, device)
    name = f"{model.card.name} v{model.card.version}"
    yield SegmentStep("model", 0, total, message=f"model {name} on {model.device}", model=name)
    images = [slices[k] for k in planes]
    for n, seg in segment_many(images, model, level, batch_size=4, cancel=cancel):
        k = planes[n]
        if isinstance(seg, InputError):
            yield SegmentStep("segment", n + 1, total, message=f"plane {k}: {seg.problem}",
                              model=name, plane=k, error=str(seg))
            continue
        qc = segmentation_qc(seg)
        bias = seg.preprocessed.bias if "bias" in maps else None
        unsure = uncertainty(seg.probabilities) if "uncertainty" in maps else None
        yield SegmentStep("segment", n + 1, total, message=step_message(k, seg, qc),
                          model=name, plane=k, segmentation=seg, qc=qc,
                          display=show(np.asarray(seg.labels, np.uint8)),
                          level=seg.preprocessed.level,
                          bias=None if bias is None else show(bias.astype(np.float32)),
                          uncertainty=None if unsure is None else show(
                              unsure.astype(np.float32)))


def segmentation_qc(seg: Segmentation) -> dict:
    """The segmentation's QC columns (flag, reasons, correlation), as the CLI's rows hold them."""
    return seg.preprocessed.registration.qc_columns()


def step_message(plane: int, seg: Segmentation, qc: Mapping | None = None) -> str:
    """``plane 14: L5-S1, 5.5 s``, or ``plane 14: CHECK: <reasons> (L5-S1, 5.5 s)`` when flagged."""
    where = f"{seg.preprocessed.level}, {seg.seconds['total']:.1f} s"
    flag = check_text(dict(qc) if qc else None)
    return f"plane {plane}: {flag} ({where})" if flag else f"plane {plane}: {where}"


def run_summary(head: str, flagged: Mapping[int, str]) -> str:
    """The end-of-run line, naming every flagged plane so the last message hides none."""
    if not flagged:
        return head
    planes = "; ".join(f"plane {k}: {text}" for k, text in sorted(flagged.items()))
    return f"{head}; {len(flagged)} flagged — {planes}"


def parse_planes(text: str, count: int) -> list[int]:
    """Slice numbers from text like ``"3, 5-7"`` (0-based, as napari's slider shows them).

    ValueError naming the problem for anything else or a slice outside ``0..count-1``.
    """
    return parse_slices(text, count)


def bias_field(image: SliceImage, n4: N4Config | None = None) -> np.ndarray:
    """N4 bias field of a slice fitted in its body mask (as the CLI does for given labels)."""
    return n4_correct(image, config=n4 or N4Config()).bias


def measure_plane(image: SliceImage, labels: np.ndarray, method: str = DEFAULT_METHOD,
                  n4: bool = True, bias: np.ndarray | None = None,
                  qc: Mapping | None = None) -> tuple[SliceMeasurement, np.ndarray | None]:
    """Areas and fat of one native plane, and the bias field used (to reuse next time).

    With ``n4`` fat is separated on ``image / bias`` (``bias`` fitted here when not given),
    else on the raw intensities. The row gets the QC columns (:func:`row_qc`; ``qc``: the
    plane's segmentation QC, None for labels the model did not make).
    """
    if n4 and bias is None:
        bias = bias_field(image)
    measured = measure_slice(image, labels, FatConfig(method=method), bias=bias if n4 else None)
    measured.row.update(row_qc(measured.row, image, qc))
    return measured, bias


def row_qc(row: Mapping, image: SliceImage, qc: Mapping | None = None) -> dict:
    """The QC columns of a measured row: the segmentation's flag and reasons (when ``qc``
    is given) plus the CLI's plausibility checks of spacing, plane and measured areas."""
    merged = {**row, FLAG: False, CHECK: ""}
    merged.update({k: qc[k] for k in QC_COLUMNS if qc and k in qc})
    merged[FLAG] = bool(merged[FLAG])
    check_row(merged, image.geometry)
    return {k: merged[k] for k in QC_COLUMNS if k in merged}


def label_table(row: dict) -> list[tuple[str, str, str, str, str, str, str]]:
    """Display rows (short, name, CSA mm², lean CSA mm², fat %, flag, QC) from a measurement row.

    Lean CSA, fat % and flag are filled for the muscles whose fat is separated (MF, ES);
    QC (:func:`label_qc`) for every label.
    """
    out = []
    for lab in LABELS:
        csa = _fmt(row.get(f"{lab.short}_csa_mm2"))
        lean = fat = flag = ""
        if lab.value in FAT_LABELS:
            lean = _fmt(row.get(f"{lab.short}_lean_csa_mm2"))
            fat = _fmt(row.get(f"{lab.short}_fat_pct"), 1)
            flag = str(row.get(f"{lab.short}_fat_flag", ""))
        out.append((lab.short, BY_VALUE[lab.value].name, csa, lean, fat, flag,
                    label_qc(row, lab.short)))
    return out


def label_qc(row: Mapping, short: str) -> str:
    """A label's QC cell: ``ok``, or ``CHECK`` on a flagged slice (every number on it is in
    doubt) followed by the reasons that name this label or its muscle."""
    if not row.get(FLAG):
        return "ok"
    muscle = short.split("_")[0]
    mine = [r for r in str(row.get(CHECK) or "").split("; ")
            if short in r.split() or r.startswith(f"{muscle} ")]
    return "CHECK: " + "; ".join(mine) if mine else "CHECK"


def _fmt(value: object, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"
