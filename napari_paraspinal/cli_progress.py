"""Progress of a long command on the terminal: a tqdm bar on a terminal, plain lines in a log.

Every long job reports ``progress(done, total, what)`` (the one callback signature of the
core); this renders it. On a terminal a bar with the count, rate and time left; when standard
error is a file or a pipe (a cluster job's log), one line per step, which a log keeps
readable where a bar's carriage returns would not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

ProgressFn = Callable[[int, int, str], None]
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
    """A ``progress(done, total, what)`` for the block; the bar is closed after it."""
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        def line(done: int, total: int, what: str) -> None:
            print(f"[{done}/{total}] {what}", file=stream, flush=True)

        yield line
        return
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, file=stream, dynamic_ncols=True, leave=True)

    def update(done: int, total: int, what: str) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.set_postfix_str(what[-60:], refresh=False)
        bar.refresh()

    _BARS.append(bar)
    try:
        yield update
    finally:
        _BARS.remove(bar)
        bar.close()
