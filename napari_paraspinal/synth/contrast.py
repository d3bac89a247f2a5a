"""Tissue maps to MR-like images of random contrast, one training batch at a time (torch).

The SynthSeg recipe (Billot et al., Medical Image Analysis 2023): every tissue class gets a
random intensity per image, so the network cannot rely on any one appearance and has to
learn shapes and context. Half the images draw every tissue's intensity at random; the other
half start from a real sequence's table (T2w, T1w, PD, Dixon water, Dixon fat, in-phase,
opposed-phase, fat-suppressed T2) with per-tissue jitter, so the common contrasts are seen
often. Then, each with its own random strength: texture within tissues and muscle fibres,
blur (partial volume of thick slices), low resolution, a smooth bias field, gamma, Rician
noise, ringing, motion ghosts and, rarely, inversion. Last, the same normalisation inference
uses: body percentiles 1 and 99 to 0 and 1, clipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .anatomy import N_TISSUES, SynthTissue

T = SynthTissue
# intensity of each tissue (order of SynthTissue) in common sequences, fat ≈ 1
_ORDER = (T.AIR, T.FAT, T.MUSCLE, T.SKIN, T.CSF, T.NUCLEUS, T.ANNULUS, T.CORTEX, T.MARROW,
          T.NERVE, T.VESSEL, T.BOWEL_GAS, T.BOWEL_FLUID, T.BOWEL_WALL, T.KIDNEY, T.LIVER,
          T.SPLEEN, T.FASCIA, T.MUSCLE_FAT, T.CLUTTER_A, T.CLUTTER_B, T.CLUTTER_C)
PRESETS: dict[str, tuple[float, ...]] = {
    "T2w": (0, 1.0, .28, .55, 1.15, .95, .30, .06, .55, .45, .06, .02, .85, .35, .55, .30, .45,
            .15, 1.0, 0.7, 0.5, 0.35),
    "T1w": (0, 1.0, .45, .60, .15, .38, .33, .06, .80, .40, .10, .02, .25, .45, .45, .55, .45,
            .20, 1.0, 0.45, 0.6, 0.3),
    "PD": (0, .90, .55, .70, .80, .75, .45, .05, .75, .60, .08, .02, .70, .50, .65, .55, .60,
           .20, .90, 0.65, 0.55, 0.45),
    "dixon_fat": (0, 1.0, .05, .30, .02, .03, .03, .02, .55, .04, .02, .01, .03, .08, .05, .12,
                  .04, .10, 1.0, 0.15, 0.35, 0.05),
    "dixon_water": (0, .07, .62, .45, 1.0, .85, .45, .04, .30, .55, .10, .02, .90, .55, .75,
                    .60, .70, .20, .07, 0.7, 0.5, 0.35),
    "in_phase": (0, 1.07, .67, .75, 1.02, .88, .48, .06, .85, .59, .12, .03, .93, .63, .80, .72,
                 .74, .30, 1.07, 0.8, 0.65, 0.45),
    "opposed_phase": (0, 1.07, .67, .75, 1.02, .88, .48, .06, .85, .59, .12, .03, .93, .63, .80,
                      .72, .74, .30, 1.07, 0.6, 0.45, 0.35),
    "stir": (0, .08, .30, .40, 1.15, .95, .30, .04, .15, .50, .05, .02, .85, .35, .60, .35, .50,
             .10, .08, 0.6, 0.45, 0.3),
}
assert all(len(v) == N_TISSUES for v in PRESETS.values())
_EVEN = tuple(int(t) for t in (T.MUSCLE, T.FAT, T.MUSCLE_FAT, T.SKIN, T.CSF, T.NUCLEUS,
                                T.ANNULUS))
_FATTY = torch.zeros(N_TISSUES)
_FATTY[[int(T.FAT), int(T.MUSCLE_FAT)]] = 1.0
_FATTY[int(T.MARROW)] = 0.5


@dataclass(frozen=True)
class ContrastConfig:
    """Probabilities and ranges of the random appearance."""

    random_share: float = 0.25  # images whose every tissue intensity is random
    jitter: float = 0.12  # per-tissue jitter of a preset (absolute, fat ≈ 1)
    texture: tuple[float, float] = (0.0, 0.07)
    coarse_texture: float = 0.35  # largest amplitude of blotchy texture (bowel, organs)
    fibres: tuple[float, float] = (0.0, 0.15)
    blur_px: tuple[float, float] = (0.0, 1.1)
    low_res: float = 0.3
    bias: tuple[float, float] = (0.0, 0.6)
    gamma_sd: float = 0.35
    noise: tuple[float, float] = (0.0, 0.06)
    ringing: float = 0.15
    ghosts: float = 0.15
    invert: float = 0.05


def _gauss_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / max(sigma, 1e-3)) ** 2)
    return k / k.sum()


def blur(image: torch.Tensor, sigma_y: float, sigma_x: float) -> torch.Tensor:
    """Separable Gaussian blur of H×W (reflect padding); sigma in pixels, 0 is none."""
    x = image[None, None]
    if sigma_y > 0.05:
        k = _gauss_kernel(sigma_y)
        x = F.conv2d(F.pad(x, (0, 0, k.numel() // 2, k.numel() // 2), mode="reflect"),
                     k.view(1, 1, -1, 1))
    if sigma_x > 0.05:
        k = _gauss_kernel(sigma_x)
        x = F.conv2d(F.pad(x, (k.numel() // 2, k.numel() // 2, 0, 0), mode="reflect"),
                     k.view(1, 1, 1, -1))
    return x[0, 0]


def smooth_noise(shape: tuple[int, int], cells: tuple[int, int], gen: torch.Generator
                 ) -> torch.Tensor:
    """Zero-mean, unit-variance smooth field: random values on a coarse grid, bicubic."""
    coarse = torch.randn((1, 1, *cells), generator=gen)
    field = F.interpolate(coarse, size=shape, mode="bicubic", align_corners=False)[0, 0]
    return (field - field.mean()) / field.std().clamp_min(1e-6)


def tissue_means(gen: torch.Generator, config: ContrastConfig) -> tuple[torch.Tensor, str]:
    """Intensity per tissue for one image, and the name of its contrast."""
    if float(torch.rand((), generator=gen)) < config.random_share:
        means = torch.rand(N_TISSUES, generator=gen)
        means[int(T.AIR)] = 0.08 * float(torch.rand((), generator=gen))
        if float(torch.rand((), generator=gen)) < 0.8:  # fat in muscle is fat
            means[int(T.MUSCLE_FAT)] = means[int(T.FAT)]
        return means, "random"
    names = list(PRESETS)
    name = names[int(torch.randint(len(names), (), generator=gen))]
    base = torch.tensor(PRESETS[name], dtype=torch.float32)
    means = (base + config.jitter * (2 * torch.rand(N_TISSUES, generator=gen) - 1)).clamp_min(0)
    means[int(T.AIR)] = 0.03 * float(torch.rand((), generator=gen))
    return means * (0.5 + float(torch.rand((), generator=gen))), name


def _u(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def synthesize(tissue: torch.Tensor, gen: torch.Generator,
               config: ContrastConfig | None = None) -> tuple[torch.Tensor, str]:
    """One H×W tissue map (long) to a normalised image in [0, 1], and its contrast name."""
    config = config or ContrastConfig()
    shape = tuple(tissue.shape)
    means, name = tissue_means(gen, config)
    spread = torch.rand(N_TISSUES, generator=gen) * config.texture[1]
    image = means[tissue] + spread[tissue] * blur(torch.randn(shape, generator=gen), 0.7, 0.7)
    blotch = torch.rand(N_TISSUES, generator=gen) * config.coarse_texture
    # muscle, fat and fluids are fairly even; bowel, its content and organs are not
    blotch[list(_EVEN)] *= 0.3
    sigma = _u(gen, 1.5, 4.0)
    noise = blur(torch.randn(shape, generator=gen), sigma, sigma)
    image = image * (1 + blotch[tissue] * noise / noise.std().clamp_min(1e-6)).clamp_min(0)
    muscle = (tissue == int(T.MUSCLE)).float()
    fibres = _u(gen, *config.fibres) * blur(torch.randn(shape, generator=gen), 2.5, 0.6)
    image = image * (1 + muscle * fibres)
    if name == "opposed_phase":
        f = blur(_FATTY[tissue], 0.8, 0.8)
        image = image * (1 - 2 * f).abs()
    image = blur(image, _u(gen, *config.blur_px), _u(gen, *config.blur_px))
    if float(torch.rand((), generator=gen)) < config.low_res:
        factor = _u(gen, 1.2, 2.6)
        small = (max(8, int(shape[0] / factor)), max(8, int(shape[1] / _u(gen, 1.0, factor))))
        image = F.interpolate(F.interpolate(image[None, None], size=small, mode="area"),
                              size=shape, mode="bilinear", align_corners=False)[0, 0]
    strength = _u(gen, *config.bias)
    image = image * torch.exp(strength * smooth_noise(shape, (4, 4), gen) / 2)
    body = tissue != int(T.AIR)
    scale = image[body].mean().clamp_min(1e-3) if body.any() else torch.tensor(1.0)
    image = (image / scale).clamp_min(0)
    image = image ** float(np.exp(config.gamma_sd * float(torch.randn((), generator=gen))))
    if float(torch.rand((), generator=gen)) < config.ringing:
        image = _ringing(image, gen)
    if float(torch.rand((), generator=gen)) < config.ghosts:
        shift = int(_u(gen, 8, 60))
        image = image + _u(gen, 0.04, 0.2) * torch.roll(image, shift, dims=0)
    sigma = _u(gen, *config.noise) * float(image[body].mean()) if body.any() else 0.0
    image = torch.hypot(image + sigma * torch.randn(shape, generator=gen),
                        sigma * torch.randn(shape, generator=gen))
    if float(torch.rand((), generator=gen)) < config.invert:
        top = torch.quantile(image[body], 0.99) if body.any() else image.max()
        image = torch.where(body, (top - image).clamp_min(0), image)
    return normalise(image, body), name


def _ringing(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gibbs ringing: k-space truncated along one axis."""
    axis = int(torch.randint(2, (), generator=gen))
    k = torch.fft.fftshift(torch.fft.fft2(image))
    n = image.shape[axis]
    keep = int(n * _u(gen, 0.35, 0.7) / 2)
    idx = torch.arange(n)
    window = ((idx - n // 2).abs() <= keep).float()
    k = k * (window[:, None] if axis == 0 else window[None, :])
    return torch.fft.ifft2(torch.fft.ifftshift(k)).abs()


def normalise(image: torch.Tensor, body: torch.Tensor, low: float = 1.0,
              high: float = 99.0) -> torch.Tensor:
    """Body percentiles ``low`` and ``high`` to 0 and 1, clipped (as inference does)."""
    values = image[body] if body.any() else image.flatten()
    if values.numel() > 20000:
        values = values[torch.linspace(0, values.numel() - 1, 20000).long()]
    lo, hi = torch.quantile(values, torch.tensor([low / 100, high / 100]))
    return ((image - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
