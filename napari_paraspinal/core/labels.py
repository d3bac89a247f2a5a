"""The label table: values, names, short names and colours used by every part of the product.

Left and right are the patient's, decided from the image orientation, never array position.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Label:
    """One structure of the segmentation."""

    value: int
    short: str
    name: str
    color: tuple[int, int, int]
    side: str  # "L", "R" or "" for midline structures
    muscle: str  # structure without side: "SP", "DI", "PS", "MF", "ES"

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        """Colour as floats 0-1 with full opacity (napari's format)."""
        r, g, b = self.color
        return (r / 255.0, g / 255.0, b / 255.0, 1.0)


BACKGROUND = 0
SP, DI, PS_L, PS_R, MF_L, MF_R, ES_L, ES_R = range(1, 9)

#: Colours: the patient's left in cool hues (blue, green, cyan), the right in warm ones (red,
#: orange, pink), the midline pale (gold, lavender), so a left/right swap shows at a glance.
#: Every two labels differ by at least 40 CIE76 ΔE, each left/right pair by at least 90.
LABELS: tuple[Label, ...] = (
    Label(SP, "SP", "spine (posterior elements)", (241, 214, 145), "", "SP"),
    Label(DI, "DI", "intervertebral disc", (200, 200, 255), "", "DI"),
    Label(PS_L, "PS_L", "left psoas", (30, 100, 230), "L", "PS"),
    Label(PS_R, "PS_R", "right psoas", (213, 60, 30), "R", "PS"),
    Label(MF_L, "MF_L", "left multifidus", (0, 170, 110), "L", "MF"),
    Label(MF_R, "MF_R", "right multifidus", (240, 160, 0), "R", "MF"),
    Label(ES_L, "ES_L", "left erector spinae", (80, 220, 230), "L", "ES"),
    Label(ES_R, "ES_R", "right erector spinae", (230, 110, 190), "R", "ES"),
)

NUM_CLASSES = len(LABELS) + 1  # with background
BY_VALUE: dict[int, Label] = {lab.value: lab for lab in LABELS}
BY_SHORT: dict[str, Label] = {lab.short: lab for lab in LABELS}

#: Muscles whose fat is separated (multifidus and erector spinae).
FAT_LABELS: tuple[int, ...] = (MF_L, MF_R, ES_L, ES_R)

#: Value each label takes when the image is mirrored left-right (for augmentation).
LR_SWAP: dict[int, int] = {
    BACKGROUND: BACKGROUND, SP: SP, DI: DI,
    PS_L: PS_R, PS_R: PS_L, MF_L: MF_R, MF_R: MF_L, ES_L: ES_R, ES_R: ES_L,
}


def label_colors() -> dict[int | None, tuple[float, float, float, float]]:
    """Colour map in napari's ``DirectLabelColormap`` form (``None`` is the default)."""
    colors: dict[int | None, tuple[float, float, float, float]] = {
        BACKGROUND: (0.0, 0.0, 0.0, 0.0),
        None: (0.0, 0.0, 0.0, 0.0),
    }
    colors.update({lab.value: lab.rgba for lab in LABELS})
    return colors


def swap_left_right(labels: np.ndarray) -> np.ndarray:
    """Exchange left and right label values (the caller mirrors the pixels)."""
    lut = np.array([LR_SWAP[v] for v in range(NUM_CLASSES)], dtype=labels.dtype)
    return lut[labels]


#: Values another dataset's convention would stop at (e.g. four muscles labelled 1–4).
_SHORT_CONVENTION = frozenset(range(1, 5))


def present_labels(labels: np.ndarray) -> list[int]:
    """The label values (1–8) that have at least one pixel in ``labels``."""
    data = np.asarray(labels)
    if data.dtype.kind == "u":  # fast path for the usual uint8 maps
        counts = np.bincount(data.ravel(), minlength=NUM_CLASSES)
        return [v for v in BY_VALUE if counts[v] > 0]
    found = set(np.unique(data).tolist())
    return [v for v in BY_VALUE if v in found]


def convention_note(labels: np.ndarray) -> str | None:
    """A note when a label map looks like another dataset's convention, else None.

    Values 0–8 pass the value check, so a map labelled 1–4 by another convention (four
    muscles, say) would be silently measured as spine, disc and psoas. The sign: values 1–4
    only, with no multifidus or erector spinae (5–8), which every labelled lumbar map of
    this product has.
    """
    present = set(present_labels(labels))
    if not present or not present <= _SHORT_CONVENTION:
        return None
    found = ",".join(str(v) for v in sorted(present))
    return (f"labels use values 1-4 only (found {found}; no multifidus or erector spinae, "
            "5-8): is this another convention? Here 1-4 mean SP, DI, PS_L, PS_R; another "
            "dataset's 1-4 (e.g. LPM: 1 ES_R, 2 MF_R, 3 MF_L, 4 ES_L) must first be mapped to "
            "1 SP, 2 DI, 3 PS_L, 4 PS_R, 5 MF_L, 6 MF_R, 7 ES_L, 8 ES_R")

#: The values a person may vouch for, as the ``--labelled`` messages spell them.
VOUCHABLE = ("takes label values 1-8 (1 SP, 2 DI, 3 PS_L, 4 PS_R, 5 MF_L, 6 MF_R, 7 ES_L, "
             "8 ES_R), comma-separated, e.g. 5,6,7,8")


class LabelListError(argparse.ArgumentTypeError, ValueError):
    """A bad list of label values: a :class:`ValueError` for callers, and an argparse type
    error so that the command line prints its message as the usage error."""


def parse_labelled(text: str, option: str = "--labelled") -> list[int]:
    """The label values of a comma-separated list (``"5,6,7,8"``), sorted and unique.

    Anything but values 1–8 (0 is the background, which no one vouches for; 9; ``abc``; an
    empty list) raises :class:`LabelListError` naming ``option`` and the allowed values.
    Usable directly as an argparse ``type``.
    """
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts):
        raise LabelListError(f"no label value given; {option} {VOUCHABLE}")
    values = set()
    for part in filter(None, parts):
        try:
            value = int(part)
        except ValueError:
            raise LabelListError(f"{part!r} is not a label value; {option} "
                                 f"{VOUCHABLE}") from None
        if value not in BY_VALUE:
            why = ("0 is the background, which no one vouches for" if value == 0
                   else f"{value} is not a label value")
            raise LabelListError(f"{why}; {option} {VOUCHABLE}")
        values.add(value)
    return sorted(values)


def label_mask(annotated: Iterable[int]) -> np.ndarray:
    """Which classes a sample annotates (for the partial-label loss): the given structures,
    and background only when every structure is given (else a 0 may be an unlabelled one)."""
    mask = np.zeros(NUM_CLASSES, bool)
    for value in annotated:
        if int(value) not in BY_VALUE:
            raise ValueError(f"not a structure label: {value}")
        mask[int(value)] = True
    mask[0] = bool(mask[1:].all())
    return mask
