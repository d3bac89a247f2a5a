"""A process-wide setting held while any thread needs it, restored when the last one leaves.

Thread counts of ITK and of BLAS are global to the process. Registration runs several fits
at once in threads and each wants one thread (ITK: repeatable sums; BLAS: SciPy's L-BFGS-B
spent most of its time waking BLAS threads for six parameters). Setting and restoring such
a value in each thread would let the first one out restore it while another still runs, so
the users are counted: the first one in applies the setting, the last one out restores it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class SharedSetting:
    """``apply()`` returns what ``restore(saved)`` needs to undo it."""

    def __init__(self, apply: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self._apply, self._restore = apply, restore
        self._lock = threading.Lock()
        self._users = 0
        self._saved: Any = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the setting for the duration of the block (nested and concurrent uses)."""
        with self._lock:
            if self._users == 0:
                self._saved = self._apply()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._restore(self._saved)
                    self._saved = None
