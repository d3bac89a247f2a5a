"""The user's level arguments: the disc levels ``--levels`` keeps and the level
``--level-anchor`` gives one slice of a stack (:mod:`.levels` counts from it)."""

from __future__ import annotations

from dataclasses import dataclass

from .levels import BODY_NAMES, DISC_NAMES, LEVEL_ORDER


def parse_levels(text: str) -> list[str]:
    """``"L4-L5,L5-S1"`` → ``["L4-L5", "L5-S1"]`` (disc levels only; case and spaces free)."""
    names = {n.upper(): n for n in DISC_NAMES}
    out: list[str] = []
    for raw in text.split(","):
        item = raw.strip().upper().replace(" ", "").replace("/", "-")
        if not item:
            raise ValueError(f"empty level in {text!r}; give discs like L4-L5,L5-S1")
        if item not in names:
            hint = (" (a vertebral body: give the disc, e.g. L4-L5)"
                    if item in {b.upper() for b in BODY_NAMES} else "")
            raise ValueError(f"unknown disc level {raw.strip()!r}{hint}; choose from "
                             f"{', '.join(DISC_NAMES)}")
        if names[item] not in out:
            out.append(names[item])
    return out


@dataclass(frozen=True)
class LevelAnchor:
    """A level the user gives for one slice of a stack (``case`` None: every stack)."""

    slice: int
    level: str
    case: str | None = None


def parse_anchor(text: str) -> LevelAnchor:
    """``"14=L4-L5"`` or ``"case1:20=L4"`` → :class:`LevelAnchor` (names as
    :data:`LEVEL_ORDER`, case and spaces free)."""
    case, _, rest = text.rpartition(":")
    index, sep, name = rest.partition("=")
    names = {n.upper(): n for n in LEVEL_ORDER}
    level = names.get(name.strip().upper().replace(" ", "").replace("/", "-"))
    if not sep or not index.strip().isdigit() or level is None:
        raise ValueError(f"level anchor {text!r}: give SLICE=LEVEL or CASE:SLICE=LEVEL, e.g. "
                         f"14=L4-L5 (slice 0-based; levels {', '.join(LEVEL_ORDER)})")
    return LevelAnchor(int(index), level, case.strip() or None)
