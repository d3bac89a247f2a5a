"""How good a registration to the atlas looks (:mod:`.registration`): the result with its
quality numbers (body Dice, correlation with the template inside the body and with the 1 mm
atlas around the labelled structures) and the reasons to flag it for a human to check."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from .atlas import Atlas
from .atlas_space import AtlasMapping, atlas_reference
from .registration_config import RegistrationConfig
from .registration_optimise import structure_region


@dataclass
class RegistrationResult:
    """The mapping found, how good it looks, and whether a human should check it."""

    mapping: AtlasMapping
    level: str
    metric: float  # Mattes MI at the ITK stages' first level (more negative is better)
    body_dice: float
    correlation: float
    flagged: bool
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    structure_correlation: float = float("nan")
    refined_alone: bool = False  # the ITK fit was flagged; the refinement alone passed QC

    def qc_columns(self) -> dict:
        """The QC columns of a measurement row (correlation empty where no fit was made)."""
        corr = None if math.isnan(self.correlation) else round(self.correlation, 4)
        return {"registration_flagged": self.flagged,
                "registration_check": "; ".join(self.reasons),
                "registration_correlation": corr}

    def qc(self) -> dict:
        """Quality numbers as a JSON-friendly dict."""
        return {"level": self.level, "metric": self.metric, "body_dice": self.body_dice,
                "correlation": self.correlation,
                "structure_correlation": self.structure_correlation, "flagged": self.flagged,
                "reasons": list(self.reasons), "refined_alone": self.refined_alone,
                "seconds": self.seconds}


def _qc_reasons(metric: float, body_dice: float, correlation: float, structures: float,
                config: RegistrationConfig) -> list[str]:
    """Why a fit should be checked by a human (empty when it looks good)."""
    reasons = []
    if not np.isfinite(metric):
        reasons.append("registration diverged")
    if body_dice < config.min_body_dice:
        reasons.append(f"body overlap with the atlas {body_dice:.2f} < {config.min_body_dice}")
    if correlation < config.min_correlation:
        reasons.append(f"correlation with the atlas {correlation:.2f} < "
                       f"{config.min_correlation}")
    if structures < config.min_structure_correlation:
        reasons.append(f"correlation with the atlas around the muscles {structures:.2f} < "
                       f"{config.min_structure_correlation}")
    return reasons


def _structure_correlation(atlas: Atlas, moving: sitk.Image, transform: sitk.Transform,
                           config: RegistrationConfig) -> float:
    """Correlation of the 1 mm atlas mean image and the registered slice around the muscles."""
    reference = atlas_reference()
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, reference, transform,
                                                  sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    region = structure_region(atlas, config.structure_margin_mm)
    a, b = np.asarray(atlas.image)[region], warped[region]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _quality(fixed: sitk.Image, fixed_mask: np.ndarray, moving: sitk.Image,
             moving_mask: np.ndarray, transform: sitk.Transform) -> tuple[float, float]:
    """Body Dice and the template/slice correlation inside the atlas body."""
    mask_img = sitk.GetImageFromArray(moving_mask.astype(np.uint8))
    mask_img.CopyInformation(moving)
    warped_mask = sitk.GetArrayFromImage(sitk.Resample(
        mask_img, fixed, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)) > 0
    warped = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear,
                                                  0.0, sitk.sitkFloat32))
    total = fixed_mask.sum() + warped_mask.sum()
    dice = float(2 * (fixed_mask & warped_mask).sum() / total) if total else 0.0
    a = sitk.GetArrayFromImage(fixed)[fixed_mask]
    b = warped[fixed_mask]
    if a.std() == 0 or b.std() == 0:
        return dice, 0.0
    return dice, float(np.corrcoef(a, b)[0, 1])
