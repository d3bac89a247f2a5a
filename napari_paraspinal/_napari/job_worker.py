"""A long job in a napari generator worker: its :class:`..jobs.Progress` events come back to
the GUI thread through the worker's ``yielded`` signal, its result through ``returned``.
The job runs in a thread of the worker, or in a child process (:mod:`..job_process`).

The worker class itself is used, not ``create_worker``: that one re-raises errors the widgets
handle, and napari 0.9's status-bar hook it adds fails on the errored signal. napari is
imported only when a worker is made, so the rest imports without Qt (a child process does).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ..job_process import JobError, can_spawn, iterate_in_process
from ..jobs import Progress, iterate

if TYPE_CHECKING:
    from napari.qt.threading import GeneratorWorker

T = TypeVar("T")


def guarded(events: Iterator[Progress]) -> Generator[Progress, None, Any]:
    """``events`` and their return value; a RuntimeError becomes a :class:`JobError`
    (superqt takes a RuntimeError for a deleted worker and returns it as the result)."""
    try:
        return (yield from events)
    except RuntimeError as err:
        raise JobError(str(err)) from err


def _job_events(job: Callable[..., T], *args: Any, process: bool = False, **kwargs: Any
                ) -> Generator[Progress, None, T]:
    run = iterate_in_process if process and can_spawn() else iterate
    return (yield from guarded(run(job, *args, **kwargs)))


def job_worker(job: Callable[..., Any], *args: Any, process: bool = False,
               **kwargs: Any) -> GeneratorWorker:
    """A (not yet started) worker running ``job(*args, progress=..., cancel=..., **kwargs)``
    through :func:`..jobs.iterate`, or with ``process`` in a child process where one can be
    started (:func:`..job_process.iterate_in_process`; ``job`` then a module-level function
    and its arguments picklable): setting the ``cancel`` given stops the job at its next
    check, and the worker still returns what the job returns."""
    from napari.qt.threading import GeneratorWorker

    return GeneratorWorker(_job_events, job, *args, process=process, **kwargs)
