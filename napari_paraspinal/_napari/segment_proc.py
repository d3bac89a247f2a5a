"""The Segment widget's work in a child process, so the GUI process's interpreter stays free.

:func:`segment_in_process` runs :func:`.tasks.segment_planes` through
:func:`..job_process.iterate_in_process` (why a child process, and how it is stopped, is
said there) and yields its steps as they come. The events, cancel token and errors are
those of the thread version; a run of one or two planes, and any run in a frozen
application (whose executable is not Python), stays in the thread.

No Qt here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..core.geometry import SliceImage
from ..job_process import can_spawn, iterate_in_process
from ..jobs import Cancel
from .tasks import SegmentStep, segment_planes

#: Runs of fewer planes stay in the worker thread: a child process first imports torch and
#: loads the model (seconds), which a slice or two does not repay.
PROCESS_MIN_PLANES = 3


def segment_steps(slices: Sequence[SliceImage], planes: Sequence[int],
                  model_path: str | os.PathLike[str] | None = None, device: str = "auto",
                  level: str = "auto", cancel: Cancel | None = None,
                  display: Callable[[np.ndarray], np.ndarray] | None = None,
                  maps: Sequence[str] = ()) -> Iterator[SegmentStep]:
    """:func:`.tasks.segment_planes` in a child process for :data:`PROCESS_MIN_PLANES` or
    more planes where one can be started, else here (in the calling thread)."""
    run = (segment_in_process if can_spawn() and len(planes) >= PROCESS_MIN_PLANES
           else segment_planes)
    return run(slices, planes, model_path, device, level, cancel, display, maps)


def segment_in_process(slices: Sequence[SliceImage], planes: Sequence[int],
                       model_path: str | os.PathLike[str] | None = None, device: str = "auto",
                       level: str = "auto", cancel: Cancel | None = None,
                       display: Callable[[np.ndarray], np.ndarray] | None = None,
                       maps: Sequence[str] = ()) -> Iterator[SegmentStep]:
    """:func:`.tasks.segment_planes` in a child process, yielding its steps.

    Setting ``cancel`` stops the child before its next few planes; closing the generator
    stops it at its next check. A failure in the child is raised here as a
    :class:`..job_process.JobError` with the child's message.
    """
    yield from iterate_in_process(_segment_job, list(slices), list(planes),
                                  None if model_path is None else str(model_path), device,
                                  level, display, tuple(maps), cancel=cancel)


def _segment_job(slices: list[SliceImage], planes: list[int], model_path: str | None,
                 device: str, level: str, display: Callable[[np.ndarray], np.ndarray] | None,
                 maps: tuple[str, ...], progress: Callable[[SegmentStep], None],
                 cancel: Cancel) -> None:
    """:func:`.tasks.segment_planes` as a job: each step goes to ``progress``."""
    for step in segment_planes(slices, planes, model_path, device, level, cancel, display,
                               maps):
        progress(step)
