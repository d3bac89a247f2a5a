"""Lumbar level of every slice of an axial stack, from the disc (DI) area per slice.

Levels are counted, never guessed: discs are found as runs of slices with a large DI area,
and they are numbered only from a fixed point — the sacrum (the lowest disc is L5-S1 when the
stack goes on far enough below it with no further disc) or a level the user gives for one
slice (``anchor``). Without either, every slice is ``"unknown"``. The count also stops (the
rest is ``"unknown"``) where the spacing of the discs says one may be missing or spurious.

Names: discs ``"L5-S1"``, ``"L4-L5"`` … ``"T12-L1"``; vertebral bodies between two discs take
the name of the vertebra (``"L4"`` lies between L3-L4 and L4-L5); below L5-S1 ``"S1"`` for one
body height, then ``"sacrum"``. Counting from the sacrum assumes five lumbar vertebrae; a
transitional vertebra (lumbarised S1 or sacralised L5) shifts every name by one, which only
a view of the whole spine can tell.

Positions are in mm along the superior axis (larger is higher, LPS +z), in any order; use
:func:`superior_positions` for a file whose slice normal may point down.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

UNKNOWN = "unknown"
#: Disc names counted up from the sacrum, and the vertebral body below each disc.
DISC_NAMES = ("L5-S1", "L4-L5", "L3-L4", "L2-L3", "L1-L2", "T12-L1", "T11-T12", "T10-T11")
BODY_NAMES = ("S1", "L5", "L4", "L3", "L2", "L1", "T12", "T11", "T10")
SACRUM = "sacrum"
#: Every level, superior first (the order of :func:`level_summary`).
LEVEL_ORDER = tuple(n for pair in zip(BODY_NAMES[:0:-1], DISC_NAMES[::-1], strict=True)
                    for n in pair) + ("S1", SACRUM)


@dataclass(frozen=True)
class LevelConfig:
    """Thresholds of disc finding and counting (mm, mm²)."""

    min_area_mm2: float = 100.0  # a disc is found where DI is at least this area ...
    rel_area: float = 0.15  # ... and this share of the stack's largest DI area (sensitive:
    # a disc missed below the lowest one found would pass for the sacrum)
    core_area: float = 0.4  # a slice of a found disc is a disc slice above this share of
    # the disc's largest area (the rest, tilted edges, belong to the bodies)
    merge_gap_mm: float = 10.0  # disc runs this close (slice to slice) are one disc
    min_pitch_mm: float = 22.0  # disc centres closer than this: one of them is doubtful
    max_pitch_mm: float = 52.0  # farther apart than this: a disc may have been missed
    max_disc_mm: float = 20.0  # a longer run of DI slices is not a disc: DI is unreliable
    sacrum_gap_mm: float = 40.0  # the stack reaches this far below the lowest disc slice ...
    sacrum_gap_evidence_mm: float = 12.0  # ... or this far where slices below show sacrum
    faint_area_mm2: float = 25.0  # DI this large this far to max_pitch_mm below the lowest
    faint_gap_mm: float = 15.0  # disc (not its tilted edge) may be a half-missed disc
    body_mm: float = 25.0  # past the last counted disc, this far is surely its next body
    s1_mm: float = 30.0  # below L5-S1, "S1" for this far, then "sacrum"
    anchor_tolerance_mm: float = 6.0  # a disc anchor may miss its run by this much


@dataclass(frozen=True)
class SliceLevel:
    """The level of one slice (in input order) and why it is unknown when it is."""

    index: int
    position_mm: float
    level: str
    disc: bool  # the slice is part of a disc run
    mid_disc: bool  # the slice nearest the centre of its (whole) disc run
    reason: str = ""


@dataclass(frozen=True)
class _Run:
    first: int  # indices into the sorted stack, inclusive
    last: int
    lo: float  # positions (mm)
    hi: float
    truncated: bool  # touches an end of the stack: its centre is not seen

    @property
    def centre(self) -> float:
        return 0.5 * (self.lo + self.hi)


def disc_runs(areas: np.ndarray, z: np.ndarray, config: LevelConfig = LevelConfig()
              ) -> list[_Run]:
    """Disc runs of a stack sorted inferior to superior (areas mm², z mm)."""
    if areas.size == 0:
        return []
    threshold = max(config.min_area_mm2, config.rel_area * float(np.max(areas)))
    on = np.flatnonzero(areas >= threshold)
    runs: list[list[int]] = []
    for k in on:
        if runs and z[k] - z[runs[-1][1]] <= config.merge_gap_mm:
            runs[-1][1] = int(k)
        else:
            runs.append([int(k), int(k)])
    n, out = len(z), []
    for a, b in runs:
        core = np.flatnonzero(areas[a:b + 1] >= config.core_area * areas[a:b + 1].max()) + a
        out.append(_Run(int(core[0]), int(core[-1]), float(z[core[0]]), float(z[core[-1]]),
                        a == 0 or b == n - 1))
    return out


def _segments(runs: list[_Run], config: LevelConfig) -> tuple[list[int], list[str]]:
    """Segment id of every run (counting never crosses a break) and why each break is."""
    seg, why, current = [], [], 0
    for i, run in enumerate(runs):
        if i:
            d = run.centre - runs[i - 1].centre
            if d > config.max_pitch_mm:
                why.append(f"discs {d:.0f} mm apart (more than {config.max_pitch_mm:.0f} mm):"
                           " a disc may have been missed")
                current += 1
            elif d < config.min_pitch_mm:
                why.append(f"discs only {d:.0f} mm apart (less than "
                           f"{config.min_pitch_mm:.0f} mm): one may not be a disc")
                current += 1
        seg.append(current)
    return seg, why


def _sacrum_reference(runs: list[_Run], z: np.ndarray, areas: np.ndarray,
                      sacrum: np.ndarray | None, config: LevelConfig) -> str:
    """'' when the lowest run is L5-S1 by the sacrum rule, else why it cannot be said."""
    if not runs:
        return "no intervertebral disc found in the stack"
    low = runs[0]
    if low.first == 0:
        return "the lowest disc is cut by the end of the stack: the sacrum is not in it"
    faint = _faint_disc_below(low, z, areas, config)
    if faint:
        return faint
    below = low.lo - float(z[0])
    seen = sacrum is not None and bool(sacrum[: low.first].any())
    if sacrum is not None and bool(sacrum[low.last + 1:].any()):
        return "sacrum evidence above the lowest disc contradicts it"
    need = config.sacrum_gap_evidence_mm if seen else config.sacrum_gap_mm
    if below < need:
        return (f"the stack ends {below:.0f} mm below the lowest disc (needs {need:.0f} mm "
                "without a disc to show the sacrum)")
    return ""


def _faint_disc_below(low: _Run, z: np.ndarray, areas: np.ndarray, config: LevelConfig
                      ) -> str:
    """Why the stretch below the lowest disc may hide a disc: DI of at least
    ``faint_area_mm2`` from ``faint_gap_mm`` to ``max_pitch_mm`` below it, apart from the
    disc's own fading (tilted) edge. A disc the model labels only faintly is not counted,
    and counting from the next one up would name every slice one level too low; '' when
    there is none."""
    k = low.first - 1
    while k >= 0 and areas[k] >= config.faint_area_mm2:  # the lowest disc's own edge
        k -= 1
    for j in range(k, -1, -1):
        gap = low.lo - float(z[j])
        if gap > config.max_pitch_mm:
            break
        if gap >= config.faint_gap_mm and areas[j] >= config.faint_area_mm2:
            return (f"faint disc labels ({areas[j]:.0f} mm²) {gap:.0f} mm below the lowest "
                    "disc: a disc may have been missed there, so the sacrum cannot be placed")
    return ""


def _anchor_disc(anchor: tuple[int, str], runs: list[_Run], z: np.ndarray, rank: np.ndarray,
                 config: LevelConfig) -> tuple[int, int]:
    """(run, its disc number) fixed by a user anchor; ValueError if it cannot hold."""
    index, name = anchor
    if not 0 <= index < len(z):
        raise ValueError(f"anchor slice {index} is outside the stack (0-{len(z) - 1})")
    k = int(rank[index])
    at = float(z[k])
    if name in DISC_NAMES:
        near = [(max(r.lo - at, at - r.hi, 0.0), i) for i, r in enumerate(runs)]
        dist, i = min(near, default=(math.inf, -1))
        if dist > config.anchor_tolerance_mm:
            raise ValueError(f"anchor slice {index} is named {name} but no disc was found "
                             "there" + (f" (nearest {dist:.0f} mm away)" if near else ""))
        return i, DISC_NAMES.index(name)
    if name == SACRUM:
        name = "S1"
    if name not in BODY_NAMES:
        raise ValueError(f"unknown level {name!r} for the anchor; use one of "
                         f"{', '.join(LEVEL_ORDER)}")
    if any(r.first <= k <= r.last for r in runs):
        raise ValueError(f"anchor slice {index} is named {name} (a vertebral body) but it "
                         "lies in a disc")
    below = [i for i, r in enumerate(runs) if r.last < k]
    above = [i for i, r in enumerate(runs) if r.first > k]
    body = BODY_NAMES.index(name)
    if below and body > 0:
        return below[-1], body - 1
    if above:
        return above[0], body
    raise ValueError(f"anchor slice {index} ({name}): no disc to count from")


def assign_levels(disc_mm2: Sequence[float], positions_mm: Sequence[float],
                  sacrum: Sequence[bool] | None = None, anchor: tuple[int, str] | None = None,
                  config: LevelConfig = LevelConfig()) -> list[SliceLevel]:
    """Level of every slice (input order) from its DI area and position (mm, up positive).

    ``sacrum``: optional per-slice evidence that a slice shows the sacrum; it lets a shorter
    stretch below the lowest disc count as the sacrum. ``anchor``: (slice index, level)
    given by the user, e.g. ``(14, "L4-L5")`` or ``(20, "L4")``; it fixes the numbering and
    takes precedence over the sacrum (a disagreement is warned about).
    """
    areas = np.nan_to_num(np.asarray(disc_mm2, float), nan=0.0)
    pos = np.asarray(positions_mm, float)
    if areas.shape != pos.shape or areas.ndim != 1:
        raise ValueError(f"{areas.size} disc areas for {pos.size} positions")
    if anchor is not None and anchor[1] not in (*LEVEL_ORDER, SACRUM):
        raise ValueError(f"unknown level {anchor[1]!r} for the anchor; use one of "
                         f"{', '.join(LEVEL_ORDER)}")
    order = np.argsort(pos, kind="stable")
    z, a = pos[order], areas[order]
    if np.any(np.diff(z) <= 0):
        raise ValueError("two slices share a position: positions must be distinct")
    rank = np.empty(len(z), int)
    rank[order] = np.arange(len(z))
    sac = None if sacrum is None else np.asarray(sacrum, bool)[order]
    if sac is not None and sac.shape != z.shape:
        raise ValueError(f"{sac.size} sacrum flags for {z.size} slices")
    runs = disc_runs(a, z, config)
    seg, breaks = _segments(runs, config)
    long = [r.hi - r.lo for r in runs if r.hi - r.lo > config.max_disc_mm]
    if long:
        why_not = (f"disc (DI) labelled on {max(long):.0f} mm of consecutive slices, more than "
                   f"a disc is thick ({config.max_disc_mm:.0f} mm): the disc labels cannot be "
                   "counted")
        return _unreliable(len(z), z, order, anchor, why_not)
    why_not = _sacrum_reference(runs, z, a, sac, config)
    ref: tuple[int, int] | None = None if why_not else (0, 0)
    if anchor is not None:
        anchored = _anchor_disc(anchor, runs, z, rank, config)
        if ref is not None and seg[anchored[0]] == 0 and anchored[0] != anchored[1]:
            warnings.warn(f"the anchor {anchor[1]} at slice {anchor[0]} disagrees with the "
                          "count from the sacrum; the anchor is used", stacklevel=2)
        ref, why_not = anchored, ""
    levels = [UNKNOWN] * len(z)
    reasons = [why_not or "no fixed point to count from"] * len(z)
    disc = np.zeros(len(z), bool)
    mid = np.zeros(len(z), bool)
    for r in runs:
        disc[r.first:r.last + 1] = True
        if not r.truncated:
            ks = np.arange(r.first, r.last + 1)
            best = min(ks, key=lambda k: (abs(z[k] - r.centre), -a[k]))
            mid[best] = True
    if ref is not None:
        _name_slices(levels, reasons, z, runs, seg, breaks, ref, config)
    return [SliceLevel(int(order[k]), float(z[k]), levels[k], bool(disc[k]), bool(mid[k]),
                       reasons[k] if levels[k] == UNKNOWN else "")
            for k in np.argsort(order)]


def _unreliable(n: int, z: np.ndarray, order: np.ndarray, anchor: tuple[int, str] | None,
                why: str) -> list[SliceLevel]:
    """Every slice unknown, but for the user's anchor slice."""
    out = []
    for i in range(n):
        k = int(np.flatnonzero(order == i)[0])
        given = anchor is not None and anchor[0] == i
        out.append(SliceLevel(i, float(z[k]), anchor[1] if given else UNKNOWN,  # type: ignore
                              False, False, "" if given else why))
    return out


def _name_slices(levels: list[str], reasons: list[str], z: np.ndarray, runs: list[_Run],
                 seg: list[int], breaks: list[str], ref: tuple[int, int],
                 config: LevelConfig) -> None:
    """Name the slices of the reference run's segment, counting from its disc number."""
    i0, n0 = ref
    s = seg[i0]
    idx = [i for i in range(len(runs)) if seg[i] == s]
    number = {i: n0 + (i - i0) for i in idx}
    lo, hi = runs[idx[0]], runs[idx[-1]]
    prev = runs[idx[0] - 1] if idx[0] > 0 else None
    nxt = runs[idx[-1] + 1] if idx[-1] + 1 < len(runs) else None
    for k in range(len(z)):
        zk = float(z[k])
        inside = [i for i in idx if runs[i].first <= k <= runs[i].last]
        if inside:
            name = _disc_name(number[inside[0]])
        elif lo.last < k < hi.first:
            name = _body_name(number[max(i for i in idx if runs[i].last < k)] + 1)
        elif k < lo.first:
            if prev is not None and k <= prev.last:
                reasons[k] = breaks[s - 1]
                continue
            if number[idx[0]] == 0:
                name = "S1" if lo.lo - zk <= config.s1_mm else SACRUM
            elif lo.lo - zk <= config.body_mm:
                name = _body_name(number[idx[0]])
            else:
                reasons[k] = (f"more than {config.body_mm:.0f} mm below the lowest counted "
                              "disc: a disc may lie in between")
                continue
        else:
            if nxt is not None and k >= nxt.first:
                reasons[k] = breaks[s]
                continue
            if zk - hi.hi > config.body_mm:
                reasons[k] = (f"more than {config.body_mm:.0f} mm above the highest counted "
                              "disc: a disc may lie in between")
                continue
            name = _body_name(number[idx[-1]] + 1)
        if name == UNKNOWN:
            reasons[k] = "beyond the levels this module names (T10-T11 to S1)"
        levels[k] = name


def _disc_name(n: int) -> str:
    return DISC_NAMES[n] if 0 <= n < len(DISC_NAMES) else UNKNOWN


def _body_name(n: int) -> str:
    return BODY_NAMES[n] if 0 <= n < len(BODY_NAMES) else UNKNOWN


def mid_disc_slices(levels: Iterable[SliceLevel],
                    wanted: Iterable[str] = ("L4-L5", "L5-S1")) -> list[int]:
    """Input indices of the mid-disc slice of each wanted level found (in input order)."""
    want = set(wanted)
    return sorted(s.index for s in levels if s.mid_disc and s.level in want)


def select_levels(rows: Sequence[dict], wanted: Iterable[str]
                  ) -> tuple[list[dict], dict[str, list[str]]]:
    """The rows ``--levels`` keeps: per case, the mid-disc slice of each wanted disc level
    (a case of single slices: each slice whose level is wanted), in input order; and per
    case the wanted levels it has no such slice of (missing or ``unknown``).

    Rows need ``case``, ``level`` and, for stacks, ``mid_disc``; failed rows of a case are
    kept so its failure stays visible.
    """
    want = list(wanted)
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(str(row.get("case", "")), []).append(row)
    kept: list[dict] = []
    missing: dict[str, list[str]] = {}
    for case, members in by_case.items():
        stack = any("mid_disc" in r for r in members)
        chosen = [r for r in members if r.get("level") in want
                  and (r.get("mid_disc") or not stack)]
        found = {r["level"] for r in chosen}
        if [lv for lv in want if lv not in found]:
            missing[case] = [lv for lv in want if lv not in found]
        kept += [r for r in members if r in chosen or r.get("status") == "failed"]
    return kept, missing


def level_summary(rows: Sequence[dict], value_columns: Sequence[str],
                  include_unknown: bool = False) -> list[dict]:
    """One row per level (superior first): ``n_slices``, the mean of each value column over
    the level's slices (NaN and None skipped) and, for discs, ``<column>_mid``: its value at
    the mid-disc slice (None where there is none). Rows need ``level`` and ``mid_disc``."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        level = str(row.get("level", UNKNOWN))
        if level == UNKNOWN and not include_unknown:
            continue
        groups.setdefault(level, []).append(row)
    rank = {n: i for i, n in enumerate((*LEVEL_ORDER, UNKNOWN))}
    out = []
    for level in sorted(groups, key=lambda n: rank.get(n, len(rank))):
        members = groups[level]
        summary: dict = {"level": level, "n_slices": len(members)}
        mids = [r for r in members if r.get("mid_disc")]
        for col in value_columns:
            values = [_number(r.get(col)) for r in members]
            values = [v for v in values if v is not None]
            summary[col] = float(np.mean(values)) if values else None
            summary[f"{col}_mid"] = _number(mids[0].get(col)) if mids else None
        out.append(summary)
    return out


def _number(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def superior_positions(source: str | os.PathLike[str]) -> list[float]:
    """Slice positions of a file in mm toward superior (the slice normal may point down)."""
    from .core.io import list_slices, read_slice

    infos = list_slices(source)
    normal = read_slice(source, index=0).geometry.matrix[:, 2]
    if abs(normal[2]) < 0.5:
        raise ValueError(f"{source}: slices are not axial (normal {np.round(normal, 2)})")
    sign = 1.0 if normal[2] > 0 else -1.0
    return [sign * info.position for info in infos]
