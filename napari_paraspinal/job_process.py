"""A long job of the one job protocol (:mod:`.jobs`) in a child Python process.

Why: in a worker thread of the GUI process, the jobs' long NumPy/SciPy calls (body mask,
hole filling, distance transforms, resampling) and torch's first import hold the
interpreter lock for up to hundreds of ms at a time, and the GUI thread, which needs the
same lock to run any Python, stalls. A child has its own interpreter, and runs at a lower
priority, so the GUI process gets a core the moment it needs one.

:func:`iterate_in_process` has the contract of :func:`.jobs.iterate`: it yields the job's
progress events and returns its result; setting ``cancel`` stops the job at its next check;
closing the generator stops the job and waits for the child. The child is ``python -m`` this
module (not ``multiprocessing``, which would run the user's main script again in the child);
in a frozen bundle, whose executable is not Python, its own executable with
:data:`FROZEN_CHILD_ARG`. The job and its arguments go to the child pickled on stdin (so the
job is a module-level function), its events and result come back pickled on its stdout, and
whatever it prints goes to stderr. Closing the child's stdin is the cancel. A failure in the
child is raised here as a :class:`JobError` carrying the child's message.

No Qt here.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, Any, TypeVar

from .jobs import Cancel

T = TypeVar("T")

#: How often the parent looks at the cancel token while it waits for the child (s).
POLL_S = 0.1
#: The child's niceness (POSIX; below-normal priority class on Windows): the GUI process,
#: whose event loop needs a core only for moments, gets it at once instead of sharing it.
CHILD_NICE = 10
#: How long closing waits for a cancelled child to finish its current step before it is
#: killed (s): a training step or a slice, never a half-written file (writes are atomic).
STOP_WAIT_S = 30.0


class JobError(Exception):
    """A failure inside a job run off the GUI thread (a thread or a child process)."""


#: The argument that makes a frozen bundle's executable run as a job's child instead of the
#: app (``installer/entry.py``).
FROZEN_CHILD_ARG = "--paraspinal-job-child"


def child_command() -> list[str] | None:
    """How to start a child: ``python -m`` this module, or in a frozen bundle its own
    executable with :data:`FROZEN_CHILD_ARG`; None where neither can be started."""
    if not sys.executable:
        return None
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_CHILD_ARG]
    return [sys.executable, "-m", __name__]


def can_spawn() -> bool:
    """Whether a child process can be started here."""
    return child_command() is not None


def iterate_in_process(job: Callable[..., T], *args: Any, **kwargs: Any
                       ) -> Generator[Any, None, T]:
    """Run ``job(*args, progress=..., cancel=..., **kwargs)`` in a child process; yield
    what it reports to ``progress`` and return its result (see the module docstring)."""
    cancel: Cancel | None = kwargs.pop("cancel", None)
    root = str(Path(__file__).resolve().parents[1])  # where this package is imported from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    command = child_command()
    if command is None:
        raise JobError("no child process can be started here (no Python executable)")
    child = subprocess.Popen(command, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env,
                             creationflags=getattr(subprocess, "BELOW_NORMAL_PRIORITY_CLASS",
                                                   0))
    events: queue.SimpleQueue = queue.SimpleQueue()
    reader = threading.Thread(target=_read, args=(child.stdout, events), daemon=True,
                              name=f"job {getattr(job, '__name__', job)} reader")
    reader.start()
    finished = False
    try:
        pickle.dump((job, args, kwargs), child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        child.stdin.flush()
        while True:
            if cancel is not None and cancel.is_set():
                _close(child.stdin)
            try:
                kind, item = events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if kind == "progress":
                yield item
            elif kind == "error":
                finished = True
                raise JobError(item)
            elif kind == "done":
                finished = True
                return item
            else:
                finished = True
                raise JobError(f"the {getattr(job, '__name__', 'job')} process ended "
                               f"unexpectedly (exit code {child.wait()})")
    except BrokenPipeError:
        finished = True
        raise JobError(f"the {getattr(job, '__name__', 'job')} process ended unexpectedly "
                       f"(exit code {child.wait()})") from None
    finally:
        _close(child.stdin)
        try:
            child.wait(timeout=1.0 if finished else STOP_WAIT_S)
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


def run_child() -> None:
    """The child: read the job from stdin, run it, send its events and result on the real
    stdout (``python -m`` this module, or a frozen bundle started with
    :data:`FROZEN_CHILD_ARG`)."""
    if hasattr(os, "nice"):
        try:
            os.nice(CHILD_NICE)
        except OSError:
            pass  # not allowed here: the job runs at normal priority
    channel = os.fdopen(os.dup(1), "wb")
    try:
        os.dup2(2, 1)  # anything printed goes to stderr, not into the channel
    except OSError:  # no stderr (a windowed executable): printing goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    sys.stdout = sys.stderr
    lock = threading.Lock()  # a job may report from its own threads

    def send(kind: str, item: Any) -> None:
        data = pickle.dumps((kind, item), protocol=pickle.HIGHEST_PROTOCOL)  # whole or not
        with lock:
            channel.write(data)
            channel.flush()

    try:
        job, args, kwargs = pickle.load(sys.stdin.buffer)
        stop = Cancel()
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()),
                         daemon=True).start()  # stdin closed: stop
        result = job(*args, progress=lambda item: send("progress", item), cancel=stop,
                     **kwargs)
        send("done", result)
    except BaseException as err:  # noqa: BLE001  sent to the parent, raised there
        send("error", str(err) or type(err).__name__)
    channel.close()


if __name__ == "__main__":
    run_child()
