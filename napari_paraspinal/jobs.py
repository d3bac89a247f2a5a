"""The one progress and cancel protocol of every long job (CLI, napari plugin and app).

A long job is a plain function that takes ``progress: ProgressFn | None`` and ``cancel:
Cancel | None``: it reports each step as a :class:`Progress` event and stops at its next
check once ``cancel`` is set, returning what it finished. The command line renders the
events with :mod:`.cli_progress`; the widgets run the job through :func:`iterate` in a
generator worker, so the events reach the GUI thread and Cancel sets the same token.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long job: ``done`` of ``total`` in ``stage`` (e.g. ``prepare``,
    ``unet``), about ``case`` when it concerns one, ``message`` in words, and ``values``
    a step's numbers (a training epoch's ``loss`` and ``val_dice``, for the curve)."""

    stage: str
    done: int
    total: int
    case: str = ""
    message: str = ""
    values: Mapping[str, float] | None = None

    @property
    def text(self) -> str:
        """What a progress line shows: the message, else the case, else the stage."""
        return self.message or self.case or self.stage


ProgressFn = Callable[[Progress], None]
#: The cancel token: set it (from any thread) and the job stops at its next check.
Cancel = threading.Event


def report(progress: ProgressFn | None, stage: str, done: int, total: int, case: str = "",
           message: str = "", values: Mapping[str, float] | None = None) -> None:
    """Send one :class:`Progress` event to ``progress`` (nothing when it is None)."""
    if progress is not None:
        progress(Progress(stage, done, total, case, message, values))


def cancelled(cancel: Cancel | None) -> bool:
    """Whether the token (None: no token) was set."""
    return cancel is not None and cancel.is_set()


def iterate(job: Callable[..., T], *args: Any, **kwargs: Any
            ) -> Generator[Progress, None, T]:
    """Run ``job(*args, progress=..., cancel=..., **kwargs)`` in a thread; yield its events.

    The generator's return value is the job's result, and an exception the job raises is
    raised here, so a napari generator worker can run it. ``cancel`` (a given token or a new
    one) is set when the generator is closed before the job ends; closing then waits for
    the job to stop, so no job outlives its generator.
    """
    cancel = kwargs.pop("cancel", None) or Cancel()
    events: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        try:
            events.put(("result", job(*args, progress=lambda p: events.put(("progress", p)),
                                      cancel=cancel, **kwargs)))
        except BaseException as err:  # noqa: BLE001  raised again in the caller's thread
            events.put(("error", err))

    thread = threading.Thread(target=work, name=f"job {getattr(job, '__name__', job)}",
                              daemon=True)
    thread.start()
    kind = "progress"
    try:
        while kind == "progress":
            kind, item = events.get()
            if kind == "progress":
                yield item
        if kind == "error":
            raise item
        return item
    finally:
        if kind == "progress":  # closed before the job ended: stop it
            cancel.set()
        thread.join()
