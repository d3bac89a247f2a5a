"""The label table: values, names, short names and colours used by every part of the product.

Left and right are the patient's, decided from the image orientation, never array position.
"""

from __future__ import annotations

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

LABELS: tuple[Label, ...] = (
    Label(SP, "SP", "spine (posterior elements)", (241, 214, 145), "", "SP"),
    Label(DI, "DI", "intervertebral disc", (111, 184, 210), "", "DI"),
    Label(PS_L, "PS_L", "left psoas", (216, 101, 79), "L", "PS"),
    Label(PS_R, "PS_R", "right psoas", (244, 164, 96), "R", "PS"),
    Label(MF_L, "MF_L", "left multifidus", (128, 174, 128), "L", "MF"),
    Label(MF_R, "MF_R", "right multifidus", (64, 224, 208), "R", "MF"),
    Label(ES_L, "ES_L", "left erector spinae", (183, 122, 218), "L", "ES"),
    Label(ES_R, "ES_R", "right erector spinae", (250, 128, 182), "R", "ES"),
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
