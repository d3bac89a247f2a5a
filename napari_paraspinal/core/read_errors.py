"""Library errors raised while reading an input, turned into :class:`InputError` text.

nibabel, SimpleITK, pydicom, Pillow and tifffile each fail in their own way; the readers
run inside :func:`reading`, so that the user only ever sees an error naming the input and
the informative part of the library's message (:func:`describe_error`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from .errors import InputError
from .listing import InputRef

__all__ = ["describe_error", "reading"]


@contextlib.contextmanager
def reading(ref: InputRef) -> Iterator[None]:
    """Turn any library error while reading into an InputError naming the input."""
    try:
        yield
    except InputError:
        raise
    except Exception as err:
        raise InputError(str(ref), "cannot be read: the file is truncated, corrupt or not "
                                   f"what its name says ({describe_error(err)})") from err


def describe_error(err: BaseException) -> str:
    """The informative part of a library error, without SimpleITK's source locations and
    object addresses (NRRD puts its detail on the last line)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in")]
    if not lines:
        return type(err).__name__
    text = _clean(lines[0])
    if len(lines) > 1 and lines[-1].startswith("[nrrd]"):
        text = f"{text} {_clean(lines[-1])}"
    return text[:200]


def _clean(line: str) -> str:
    for prefix in ("sitk::ERROR:", "ITK ERROR:", "[nrrd]"):
        line = line.removeprefix(prefix).strip()
    return re.sub(r"\w+\(0x[0-9a-fA-F]+\):\s*", "", line)
