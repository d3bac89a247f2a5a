"""Progress of a long command on the terminal: a tqdm bar on a terminal, plain lines in a log.

Every long job reports :class:`.jobs.Progress` events (the one protocol of the core); this
renders them. On a terminal a bar with the count, rate and time left; when standard error
is a file or a pipe (a cluster job's log), one line per step, which a log keeps readable
where a bar's carriage returns would not.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from .jobs import Progress, ProgressFn

_BARS: list = []  # the bar on the terminal now, if any (notices are written above it)


def say(text: str, stream: IO[str] | None = None) -> None:
    """Print a notice; with a bar on the terminal, above the bar instead of through it."""
    stream = stream if stream is not None else sys.stderr
    if _BARS:
        _BARS[-1].write(text, file=stream)
    else:
        print(text, file=stream, flush=True)


@contextmanager
def progress_reporter(unit: str = "slice", stream: IO[str] | None = None
                      ) -> Iterator[ProgressFn]:
    """A :data:`.jobs.ProgressFn` for the block; the bar is closed after it."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        def line(event: Progress) -> None:
            print(f"[{event.done}/{event.total}] {event.text}", file=stream, flush=True)

        yield line
        return
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, file=stream, dynamic_ncols=True, leave=True)

    def update(event: Progress) -> None:
        if bar.total != event.total:
            bar.total = event.total
        bar.n = event.done
        bar.set_postfix_str(event.text[-60:], refresh=False)
        bar.refresh()

    _BARS.append(bar)
    try:
        yield update
    finally:
        _BARS.remove(bar)
        bar.close()
