"""The work behind the Segment and Fat & areas widgets, as plain functions (no Qt).

Widgets only collect settings, start these in a worker thread and show what comes back.
:func:`segment_planes` is a generator that yields after every slice, so a caller can show
progress and stop between slices; :func:`measure_plane` runs the core's ``measure_slice``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from threading import Event

import numpy as np

from ..core.errors import InputError
from ..core.geometry import SliceImage
from ..core.labels import BY_VALUE, FAT_LABELS, LABELS
from ..fat import FatConfig
from ..measure import SliceMeasurement, measure_slice
from ..preprocess.n4 import N4Config, n4_correct
from ..segment import Segmentation, load_model, segment_slice


@dataclass
class SegmentStep:
    """Progress of a segmentation run; ``segmentation`` is set when a plane is done."""

    done: int
    total: int
    message: str
    model: str = ""
    plane: int | None = None
    segmentation: Segmentation | None = None
    error: str = ""


def segment_planes(
    slices: Sequence[SliceImage],
    planes: Sequence[int],
    model_path: str | os.PathLike[str] | None = None,
    device: str = "auto",
    level: str = "auto",
    cancel: Event | None = None,
) -> Iterator[SegmentStep]:
    """Load the model, then segment ``slices[k]`` for every ``k`` in ``planes``, one at a time.

    Yields once when the model is loaded and once per plane. A plane the chain cannot use
    yields its error and the run goes on; setting ``cancel`` stops before the next plane.
    """
    total = len(planes)
    model = load_model(model_path, device)
    name = f"{model.card.name} v{model.card.version}"
    yield SegmentStep(0, total, f"model {name} on {model.device}", model=name)
    for n, k in enumerate(planes):
        if cancel is not None and cancel.is_set():
            return
        try:
            seg = segment_slice(slices[k], model, level)
        except InputError as err:
            yield SegmentStep(n + 1, total, f"plane {k}: {err.problem}", name, k, error=str(err))
            continue
        msg = f"plane {k}: {seg.preprocessed.level}, {seg.seconds['total']:.1f} s"
        yield SegmentStep(n + 1, total, msg, name, k, seg)


def parse_planes(text: str, count: int) -> list[int]:
    """Slice numbers from text like ``"3, 5-7"`` (0-based, as napari's slider shows them).

    ValueError naming the problem for anything else or a slice outside ``0..count-1``.
    """
    planes: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"not a slice number or range: {part!r}") from None
        if first > last or first < 0 or last >= count:
            raise ValueError(f"slices must lie in 0-{count - 1}, got {part!r}")
        planes.extend(k for k in range(first, last + 1) if k not in planes)
    if not planes:
        raise ValueError("no slice given (e.g. 3, 5-7)")
    return planes


def bias_field(image: SliceImage, n4: N4Config | None = None) -> np.ndarray:
    """N4 bias field of a slice fitted in its body mask (as the CLI does for given labels)."""
    return n4_correct(image, config=n4 or N4Config()).bias


def measure_plane(image: SliceImage, labels: np.ndarray, method: str = "kmeans",
                  n4: bool = True, bias: np.ndarray | None = None
                  ) -> tuple[SliceMeasurement, np.ndarray | None]:
    """Areas and fat of one native plane, and the bias field used (to reuse next time).

    With ``n4`` fat is separated on ``image / bias`` (``bias`` fitted here when not given),
    else on the raw intensities.
    """
    if n4 and bias is None:
        bias = bias_field(image)
    measured = measure_slice(image, labels, FatConfig(method=method), bias=bias if n4 else None)
    return measured, bias


def label_table(row: dict) -> list[tuple[str, str, str, str, str, str]]:
    """Display rows (short, name, CSA mm², lean CSA mm², fat %, flag) from a measurement row.

    Lean CSA, fat % and flag are filled for the muscles whose fat is separated (MF, ES).
    """
    out = []
    for lab in LABELS:
        csa = _fmt(row.get(f"{lab.short}_csa_mm2"))
        lean = fat = flag = ""
        if lab.value in FAT_LABELS:
            lean = _fmt(row.get(f"{lab.short}_lean_csa_mm2"))
            fat = _fmt(row.get(f"{lab.short}_fat_pct"), 1)
            flag = str(row.get(f"{lab.short}_fat_flag", ""))
        out.append((lab.short, BY_VALUE[lab.value].name, csa, lean, fat, flag))
    return out


def _fmt(value: object, digits: int = 1) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"
