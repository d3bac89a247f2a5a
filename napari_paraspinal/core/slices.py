"""Slice choices as users type them: ``"3, 5-7"`` (0-based, as napari's slider shows)."""

from __future__ import annotations


def parse_slices(text: str, count: int | None = None) -> list[int]:
    """Slice numbers in the order given, without repeats.

    ValueError naming the problem for anything that is not a number or range, or (when
    ``count`` is known) a slice outside ``0..count-1``.
    """
    slices: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"not a slice number or range: {part!r}") from None
        if first > last or first < 0:
            raise ValueError(f"not a slice range (0-based, low-high): {part!r}")
        if count is not None and last >= count:
            raise ValueError(f"slices must lie in 0-{count - 1}, got {part!r}")
        slices.extend(k for k in range(first, last + 1) if k not in slices)
    if not slices:
        raise ValueError("no slice given (e.g. 3, 5-7)")
    return slices
