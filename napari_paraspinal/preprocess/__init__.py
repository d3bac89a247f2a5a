"""Preprocessing of a slice before segmentation: body mask, N4 bias correction, normalisation."""

from .bodymask import body_mask
from .n4 import N4Config, N4Result, n4_correct
from .normalize import NormalizeConfig, normalize

__all__ = [
    "N4Config",
    "N4Result",
    "NormalizeConfig",
    "body_mask",
    "n4_correct",
    "normalize",
]
