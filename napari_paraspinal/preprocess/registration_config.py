"""The settings of atlas registration (:mod:`.registration`), as stored in model cards."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistrationConfig:
    """Settings of :func:`.registration.register`; JSON-friendly, stored in model cards.

    ``refine_metric`` has one value, "ncc" (:mod:`.ncc_affine`); the field stays because
    model cards record it. Registering with any other value is a ValueError.
    """

    histogram_bins: int = 32
    sampling: float = 1.0
    shrink: tuple[int, ...] = (4,)
    smoothing_mm: tuple[float, ...] = (4.0,)
    iterations: int = 200
    convergence: float = 1e-8
    convergence_window: int = 10
    stages: tuple[str, ...] = ("similarity", "affine")
    itk_spacing_mm: float = 2.0
    refine: bool = True
    refine_shrink: tuple[int, ...] = (4, 2, 1)
    refine_smoothing_mm: tuple[float, ...] = (4.0, 2.0, 0.0)
    refine_margin_mm: float = 30.0
    refine_metric: str = "ncc"
    refine_max_rescale: float = 1.5
    rotation_starts_deg: tuple[float, ...] = (-20.0, -10.0, 0.0, 10.0, 20.0)
    full_starts: int = 2
    refine_only_fallback: bool = True
    min_body_dice: float = 0.80
    min_correlation: float = 0.15
    min_structure_correlation: float = 0.55
    structure_margin_mm: float = 10.0
    seed: int = 20250

