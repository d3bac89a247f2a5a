"""Dixon pairs found in a DICOM study by image type.

A Dixon scan exports its water, fat, in-phase and opposed-phase images as separate series of
one acquisition. When the inputs of a run hold such series, the water and fat series of an
acquisition become one Dixon case (:class:`.case_input.DixonRef`, segmented on water + fat
with the Dixon fat fraction) instead of two plain cases, and its in-phase and opposed-phase
series are not run separately (the in-phase image is what the Dixon case segments).

The role of a series comes from its ImageType (0008,0008) values: Siemens WATER, FAT,
IN_PHASE, OPP_PHASE; Philips W, F, IP, OP; GE WATER, FAT, IN PHASE, OUT PHASE. Only where
ImageType names none is the SeriesDescription read, by whole words (``t1_vibe_dixon_tra_W``,
``..._water``, ``..._opp``), never by a letter inside a word. Series are one acquisition when
their study, frame of reference (where both have one), slice count, matrix, pixel spacing,
orientation and slice positions agree. Anything ambiguous (two water series of one
acquisition, water without fat) stays as plain cases with a note on their rows: a wrong pair
would give wrong fat fractions. Only headers are read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from .case_input import DixonRef
from .core import dicom, dicom_files, dicom_frames
from .core.errors import InputError
from .core.listing import InputRef

WATER, FAT, IN_PHASE, OPP_PHASE = "water", "fat", "in-phase", "opposed-phase"

#: ImageType values (upper case, spaces and hyphens as "_") that name a Dixon image.
_IMAGE_TYPE = {
    "WATER": WATER, "W": WATER, "FAT": FAT, "F": FAT,
    "IN_PHASE": IN_PHASE, "INPHASE": IN_PHASE, "IP": IN_PHASE,
    "OPP_PHASE": OPP_PHASE, "OPPOSED_PHASE": OPP_PHASE, "OUT_PHASE": OPP_PHASE,
    "OUT_OF_PHASE": OPP_PHASE, "OUTPHASE": OPP_PHASE, "OPP": OPP_PHASE, "OP": OPP_PHASE,
}
#: SeriesDescription words that name a role anywhere; short ones only as the last word.
_WORDS = {"WATER": WATER, "FAT": FAT, "INPHASE": IN_PHASE, "OPPPHASE": OPP_PHASE,
          "OUTPHASE": OPP_PHASE, "OPPOSEDPHASE": OPP_PHASE}
_BEFORE_PHASE = {"IN": IN_PHASE, "OPP": OPP_PHASE, "OPPOSED": OPP_PHASE, "OUT": OPP_PHASE}
_LAST = {"W": WATER, "F": FAT, "IN": IN_PHASE, "IP": IN_PHASE, "OPP": OPP_PHASE,
         "OP": OPP_PHASE, "OUT": OPP_PHASE}
#: A word after WATER/FAT that makes it no Dixon role (fat sat, water excitation, fat
#: fraction map, fat suppressed).
_NOT_A_ROLE = ("SAT", "SUP", "EXC", "FRAC", "PERC", "SIG")
_TAGS = ["ImageType", "SeriesDescription", "SeriesNumber", "StudyInstanceUID",
         "FrameOfReferenceUID"]


def image_type_roles(values: object) -> set[str]:
    """The Dixon roles that ImageType values name (case-insensitive, whole values)."""
    if values is None:
        return set()
    items = values.split("\\") if isinstance(values, str) else list(values)
    keys = (re.sub(r"[\s\-]+", "_", str(v).strip().upper()) for v in items)
    return {_IMAGE_TYPE[k] for k in keys if k in _IMAGE_TYPE}


def description_roles(description: str) -> set[str]:
    """The Dixon roles that a SeriesDescription names by whole words."""
    words = re.findall(r"[A-Z0-9]+", description.upper())
    roles = set()
    for k, word in enumerate(words):
        after = words[k + 1] if k + 1 < len(words) else ""
        if word in _WORDS and not after.startswith(_NOT_A_ROLE):
            roles.add(_WORDS[word])
        elif word in _BEFORE_PHASE and after == "PHASE":
            roles.add(_BEFORE_PHASE[word])
    if words and words[-1] in _LAST:
        roles.add(_LAST[words[-1]])
    return roles


def series_role(image_type: object, description: str) -> tuple[str | None, str]:
    """The Dixon role of an image (None when none or several) and what told it: "image type",
    "series description" (only when ImageType names no role) or ""."""
    for roles, how in ((image_type_roles(image_type), "image type"),
                       (description_roles(description), "series description")):
        if roles:
            return (next(iter(roles)) if len(roles) == 1 else None), how
    return None, ""


@dataclass
class _Series:
    """What pairing needs of one DICOM series: its role and acquisition (headers only)."""

    index: int  # position in the inputs
    ref: InputRef
    role: str
    how: str
    number: str
    study: str
    frame_of_reference: str
    frames: list[dicom_frames.Frame]  # sorted along the normal, as the case reads them

    @property
    def name(self) -> str:
        return f"{self.role} series {self.number}"


def pair_dixon_series(refs: Sequence[InputRef | DixonRef]
                      ) -> tuple[list[InputRef | DixonRef], list[InputError]]:
    """The inputs with each acquisition's Dixon water and fat series as one
    :class:`DixonRef` (in the water series' place), and its in-phase and opposed-phase series
    taken out (returned as skipped, with the reason). Unpaired Dixon series stay plain cases
    with a note saying why; other inputs are returned as given."""
    first = {_key(r): k for k, r in reversed(list(enumerate(refs)))}
    wanted: dict[Path, set[str | None]] = {}  # a series given twice takes part once
    for k, r in enumerate(refs):
        if first[_key(r)] == k and isinstance(r, InputRef) and r.path.is_dir():
            wanted.setdefault(r.path, set()).add(r.series_uid)
    heads = {folder: _first_headers(folder, uids) for folder, uids in wanted.items()}
    series = [s for k, r in enumerate(refs)
              if isinstance(r, InputRef) and first[_key(r)] == k and r.path in heads
              and (s := _describe(k, r, heads[r.path].get(r.series_uid))) is not None]
    out: dict[int, InputRef | DixonRef | None] = dict(enumerate(refs))
    skipped: list[InputError] = []
    for group in _acquisitions(series):
        by_role = {role: [s for s in group if s.role == role]
                   for role in (WATER, FAT, IN_PHASE, OPP_PHASE)}
        waters, fats = by_role[WATER], by_role[FAT]
        if len(waters) == 1 and len(fats) == 1:
            water, fat = waters[0], fats[0]
            phases = by_role[IN_PHASE] + by_role[OPP_PHASE]
            how = " and ".join(sorted({water.how, fat.how}))
            note = (f"Dixon pair found by {how}: water series {water.number}, fat series "
                    f"{fat.number}")
            if phases:
                note += (f"; {_and([s.name for s in phases])} of this acquisition not run "
                         "separately")
            out[water.index] = DixonRef(water.ref, fat.ref, note=note)
            out[fat.index] = None
            for s in phases:
                out[s.index] = None
                skipped.append(InputError(str(s.ref), f"Dixon {s.name}: not run separately "
                                          f"(its acquisition is the Dixon case of water "
                                          f"series {water.number} and fat series "
                                          f"{fat.number}, segmented on water + fat)"))
        elif waters or fats:
            note = "not paired as a Dixon case automatically: " + _why(waters, fats)
            for s in waters + fats:
                out[s.index] = replace(s.ref, note=note)
    return [r for r in out.values() if r is not None], skipped


def _why(waters: list[_Series], fats: list[_Series]) -> str:
    """Why the water and fat series of one acquisition were not paired, in words."""
    if not fats or not waters:
        found, missing = (waters, FAT) if waters else (fats, WATER)
        return (f"{_and([s.name for s in found])} without a {missing} series of the same "
                "acquisition (same study, slice count, matrix, spacing, orientation and "
                "positions)")
    counts = [f"{len(group)} {role} series ({', '.join(s.number for s in group)})"
              for role, group in ((WATER, waters), (FAT, fats))]
    return (f"{' and '.join(counts)} of one acquisition; give the right pair with --water "
            "and --fat")


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _key(ref: InputRef | DixonRef) -> object:
    if isinstance(ref, InputRef):
        return (os.path.abspath(ref.path), ref.series_uid)
    return id(ref)


def _first_headers(folder: Path, uids: set[str | None]) -> dict[str | None, Dataset]:
    """The header of one image of each series ``uids`` in ``folder``, reading files only until
    each was seen: a folder of one series costs one read, so runs without Dixon stay fast."""
    found: dict[str | None, Dataset] = {}
    try:
        paths = sorted(folder.iterdir())
    except OSError:
        return found
    for path in paths:
        if len(found) == len(uids):
            break
        try:
            if path.name.startswith(".") or not path.is_file() or not \
                    dicom_files.is_dicom_candidate(path):
                continue
            ds = dicom_files.read_header(path, [*_TAGS, "SeriesInstanceUID", "Rows"])
        except Exception:  # noqa: BLE001  the case itself reports an unreadable file
            continue
        uid = str(ds.SeriesInstanceUID) if ds.get("SeriesInstanceUID") else None
        if "Rows" in ds and uid in uids:
            found.setdefault(uid, ds)
    return found


def _describe(index: int, ref: InputRef, first: Dataset | None) -> _Series | None:
    """A DICOM series with a Dixon role (``first``: the header of one of its images); None
    for any other (and for a series its case will report as unreadable)."""
    role, how = _role_of(first) if first is not None else (None, "")
    if role is None:
        return None
    try:
        frames = dicom.folder_series(ref.path).get(ref.series_uid)
        if not frames:
            return None
        for path in dict.fromkeys(fr.path for fr in frames):
            if _role_of(dicom_files.read_header(path, _TAGS))[0] != role:
                return None  # images of several roles in one series: not one Dixon image
        stack = dicom.DicomStack(str(ref), frames, "DICOM series")  # sorted, consistent
    except Exception:  # noqa: BLE001  the case itself reports what is wrong
        return None
    number = first.get("SeriesNumber")
    label = str(number) if number not in (None, "") else (
        str(first.get("SeriesDescription", "")) or str(ref))
    return _Series(index, ref, role, how, label, str(first.get("StudyInstanceUID", "")),
                   str(first.get("FrameOfReferenceUID", "")), stack.frames)


def _role_of(ds: Dataset) -> tuple[str | None, str]:
    return series_role(ds.get("ImageType"), str(ds.get("SeriesDescription", "")))


def _acquisitions(series: list[_Series]) -> list[list[_Series]]:
    """The series grouped by acquisition (series that match any of a group join it)."""
    groups: list[list[_Series]] = []
    for s in series:
        joined = [g for g in groups if any(_same_acquisition(s, t) for t in g)]
        merged = [t for g in joined for t in g] + [s]
        groups = [g for g in groups if not any(g is j for j in joined)] + [merged]
    return sorted(groups, key=lambda g: min(s.index for s in g))


def _same_acquisition(a: _Series, b: _Series) -> bool:
    """Whether two series are images of one acquisition: same study and frame of reference
    (where both have one), slice count, matrix, pixel spacing, orientation and positions
    (within a tenth of the smaller pixel)."""
    if a.study != b.study or (a.frame_of_reference and b.frame_of_reference
                              and a.frame_of_reference != b.frame_of_reference):
        return False
    fa, fb = a.frames, b.frames
    if len(fa) != len(fb) or (fa[0].rows, fa[0].cols) != (fb[0].rows, fb[0].cols):
        return False
    sa, sb = fa[0].pixel_spacing, fb[0].pixel_spacing
    if (sa is None) != (sb is None) or (sa is not None and not np.allclose(
            sa, sb, rtol=1e-3, atol=0.0)):
        return False
    if not np.allclose(fa[0].direction, fb[0].direction, atol=1e-3):
        return False
    tol = max(0.1 * min(sa or (1.0, 1.0)), 0.01)
    for x, y in zip(fa, fb, strict=True):
        if (x.origin is None) != (y.origin is None):
            return False
        if x.origin is not None and np.linalg.norm(np.subtract(x.origin, y.origin)) > tol:
            return False
    return True
