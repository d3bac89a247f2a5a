"""The Segment widget's work in a child process, so the GUI process's interpreter stays free.

In a worker thread, the chain's long NumPy/SciPy calls (body mask, hole filling, distance
transforms) and the first import of torch hold the interpreter lock for up to hundreds of
ms at a time, and the GUI thread, which needs the same lock to run any Python, stalls.
:func:`segment_in_process` runs :func:`.tasks.segment_planes` in a fresh interpreter
(``python -m`` this module, not ``multiprocessing``, which would run the user's main script
again in the child) and yields its steps as they come: pickled through the child's stdout,
whose print output goes to stderr instead. Closing the child's stdin stops it before its
next few planes. The events, cancel token and errors are those of the thread version; a
run of one or two planes, and any run in a frozen application (whose executable is not
Python), stays in the thread.

No Qt here.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..core.geometry import SliceImage
from ..jobs import Cancel
from .job_worker import JobError
from .tasks import SegmentStep, segment_planes

#: How often the parent looks at the cancel token while it waits for the child (s).
POLL_S = 0.1
#: Runs of fewer planes stay in the worker thread: a child process first imports torch and
#: loads the model (seconds), which a slice or two does not repay.
PROCESS_MIN_PLANES = 3


def can_spawn() -> bool:
    """Whether a Python child process can be started here (not in a frozen application)."""
    return not getattr(sys, "frozen", False) and bool(sys.executable)


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
    stops it at once. A failure in the child is raised here as a :class:`.JobError` with
    the child's message.
    """
    root = str(Path(__file__).resolve().parents[2])  # where this package is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    child = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env)
    events: queue.SimpleQueue = queue.SimpleQueue()
    reader = threading.Thread(target=_read, args=(child.stdout, events), daemon=True,
                              name="paraspinal segment reader")
    reader.start()
    try:
        pickle.dump((list(slices), list(planes), model_path, device, level, display,
                     tuple(maps)), child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        child.stdin.flush()
        while True:
            if cancel is not None and cancel.is_set():
                _close(child.stdin)
            try:
                kind, item = events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if kind == "step":
                yield item
            elif kind == "error":
                raise JobError(item)
            elif kind == "done":
                return
            else:
                raise JobError(f"the segmentation process ended unexpectedly "
                               f"(exit code {child.wait()})")
    except BrokenPipeError:
        raise JobError(f"the segmentation process ended unexpectedly "
                       f"(exit code {child.wait()})") from None
    finally:
        _close(child.stdin)
        try:
            child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        reader.join(timeout=1.0)


def _read(stream: IO[bytes], events: queue.SimpleQueue) -> None:
    """Put the child's messages into ``events``, then ``("eof", None)``."""
    try:
        while True:
            events.put(pickle.load(stream))
    except (EOFError, OSError, pickle.UnpicklingError):
        events.put(("eof", None))


def _close(stream: IO[bytes] | None) -> None:
    if stream is not None and not stream.closed:
        try:
            stream.close()
        except OSError:
            pass


def _child() -> None:
    """The child: read the job from stdin, send its steps on the real stdout."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the channel
    sys.stdout = sys.stderr

    def send(kind: str, item: Any) -> None:
        pickle.dump((kind, item), channel, protocol=pickle.HIGHEST_PROTOCOL)
        channel.flush()

    try:
        slices, planes, model_path, device, level, display, maps = pickle.load(
            sys.stdin.buffer)
        stop = Cancel()
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()),
                         daemon=True).start()  # stdin closed: stop
        for step in segment_planes(slices, planes, model_path, device, level, stop, display,
                                   maps):
            send("step", step)
        send("done", None)
    except BaseException as err:  # noqa: BLE001  sent to the parent, raised there
        send("error", str(err) or type(err).__name__)
    channel.close()


if __name__ == "__main__":
    _child()
