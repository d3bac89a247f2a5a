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
from ..core.slices import parse_slices
from ..fat import DEFAULT_METHOD, FatConfig
from ..measure import SliceMeasurement, measure_slice
from ..preprocess.n4 import N4Config, n4_correct
from ..segment import Segmentation, load_model, segment_many


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

    Yields once when the model is loaded and once per plane (the network runs on a few
    planes at a time). A plane the chain cannot use yields its error and the run goes on;
    setting ``cancel`` stops before the next few planes.
    """
    total = len(planes)
    model = load_model(model_path, device)
    name = f"{model.card.name} v{model.card.version}"
    yield SegmentStep(0, total, f"model {name} on {model.device}", model=name)
    images = [slices[k] for k in planes]
    for n, seg in segment_many(images, model, level, batch_size=4, cancel=cancel):
        k = planes[n]
        if isinstance(seg, InputError):
            yield SegmentStep(n + 1, total, f"plane {k}: {seg.problem}", name, k, error=str(seg))
            continue
        msg = f"plane {k}: {seg.preprocessed.level}, {seg.seconds['total']:.1f} s"
        yield SegmentStep(n + 1, total, msg, name, k, seg)


def parse_planes(text: str, count: int) -> list[int]:
    """Slice numbers from text like ``"3, 5-7"`` (0-based, as napari's slider shows them).

    ValueError naming the problem for anything else or a slice outside ``0..count-1``.
    """
    return parse_slices(text, count)


def bias_field(image: SliceImage, n4: N4Config | None = None) -> np.ndarray:
    """N4 bias field of a slice fitted in its body mask (as the CLI does for given labels)."""
    return n4_correct(image, config=n4 or N4Config()).bias


def measure_plane(image: SliceImage, labels: np.ndarray, method: str = DEFAULT_METHOD,
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
