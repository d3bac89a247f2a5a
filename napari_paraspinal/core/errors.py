"""The one exception type the project raises for bad input."""

from __future__ import annotations

from os import PathLike


class InputError(ValueError):
    """A file (or array) cannot be used; the message names the file and the problem.

    Raised for missing, empty, corrupt or truncated files, unsupported dimensions, RGB data,
    non-finite or all-zero pixels, absurd spacing and oversized images. Batch runners catch it,
    report it and go on with the next case.
    """

    def __init__(self, source: str | PathLike[str] | None, problem: str) -> None:
        self.source = str(source) if source is not None else "<array>"
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")
