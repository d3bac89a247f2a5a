"""Exact O(N^2) reference of the dense CRF, for tests of :mod:`.crf` and :mod:`.crf_filters`.

Brute-force messages over all pixel pairs and a mean field built on them with the same update
and output as :class:`.crf.CRFasRNN`; small images only (memory grows as (H W)^2).
"""

from __future__ import annotations

import torch

from .crf import CRFConfig


def dense_message_bruteforce(
    q: torch.Tensor,
    image: torch.Tensor,
    theta_alpha: float,
    theta_beta: float,
    theta_gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact O(N^2) spatial and bilateral messages over all pairs ``j != i`` (small images only)."""
    b, c, h, w = q.shape
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=q.dtype, device=q.device),
        torch.arange(w, dtype=q.dtype, device=q.device),
        indexing="ij",
    )
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)
    d2 = torch.cdist(pos, pos) ** 2
    inten = image.reshape(b, -1, 1).to(q.dtype)
    i2 = (inten - inten.transpose(1, 2)) ** 2
    off = 1.0 - torch.eye(h * w, dtype=q.dtype, device=q.device)
    k_spatial = torch.exp(-d2 / (2 * theta_gamma**2)) * off
    k_bilateral = torch.exp(-d2 / (2 * theta_alpha**2) - i2 / (2 * theta_beta**2)) * off
    flat = q.reshape(b, c, -1)
    spatial = torch.einsum("ij,bcj->bci", k_spatial, flat).reshape(b, c, h, w)
    bilateral = torch.einsum("bij,bcj->bci", k_bilateral, flat).reshape(b, c, h, w)
    return spatial, bilateral


def _compatibility(compat: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
    return torch.einsum("lm,bmhw->blhw", compat, message)


def dense_meanfield_bruteforce(
    unary: torch.Tensor,
    image: torch.Tensor,
    config: CRFConfig,
    spatial_weight: torch.Tensor | float | None = None,
    bilateral_weight: torch.Tensor | float | None = None,
    compatibility: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference mean field with exact messages; same update and output as :class:`CRFasRNN`."""
    c = unary.shape[1]
    ws = config.spatial_weight if spatial_weight is None else spatial_weight
    wb = config.bilateral_weight if bilateral_weight is None else bilateral_weight
    ws = torch.as_tensor(ws, dtype=unary.dtype, device=unary.device).reshape(-1, 1, 1)
    wb = torch.as_tensor(wb, dtype=unary.dtype, device=unary.device).reshape(-1, 1, 1)
    if compatibility is None:
        compatibility = 1.0 - torch.eye(c, dtype=unary.dtype, device=unary.device)
    norm_s = norm_b = 1.0
    if config.normalize:
        ones = torch.ones_like(unary[:, :1])
        s1, b1 = dense_message_bruteforce(ones, image, config.theta_alpha, config.theta_beta,
                                          config.theta_gamma)
        norm_s, norm_b = 1.0 / (s1 + 1e-6), 1.0 / (b1 + 1e-6)
    logits = unary
    for _ in range(config.iterations):
        q = logits.softmax(1)
        spatial, bilateral = dense_message_bruteforce(
            q, image, config.theta_alpha, config.theta_beta, config.theta_gamma
        )
        message = ws * spatial * norm_s + wb * bilateral * norm_b
        logits = unary - _compatibility(compatibility, message)
    return logits
