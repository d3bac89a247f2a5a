"""Soft Dice and cross-entropy losses with support for partially labelled samples.

Shapes: ``logits`` is ``B x C x H x W`` (raw network output), ``target`` is ``B x H x W`` int64
with values ``0..C-1`` (0 = background), ``label_mask`` is ``B x C`` bool saying which classes
are annotated in each sample.

Partial labels. Some data sets label only a few structures (e.g. multifidus and erector
spinae); there a 0 in the target does not mean background, it means "not an annotated
structure": background *or* any unannotated structure. A sample is *fully labelled* when every
entry of its ``label_mask`` row is True; otherwise it is *partially labelled* and its
background entry is ignored (0 can never mean background there). For a partially labelled
sample:

* Dice is computed only over its annotated foreground classes;
* cross-entropy is *marginal*: the softmax probabilities of all unannotated classes and the
  background are summed into one merged "other" class, and pixels whose target is 0 take
  "other" as their target. A pixel labelled 0 costs ``-log(p_0 + sum of p_k, k unannotated)``,
  so predicting an unannotated structure there is not penalised; a pixel labelled with an
  annotated class ``c`` costs ``-log p_c`` as usual.

With ``label_mask`` None or all True both losses are exactly the ordinary ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check(logits: torch.Tensor, target: torch.Tensor,
           label_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Validate shapes and values; return the effective mask (None when all classes count)."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be B x C x H x W, got shape {tuple(logits.shape)}")
    b, c, h, w = logits.shape
    if target.shape != (b, h, w):
        raise ValueError(f"target must be B x H x W = {(b, h, w)}, got {tuple(target.shape)}")
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer label map, got {target.dtype}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
        raise ValueError(f"target values must lie in 0..{c - 1}, got "
                         f"{int(target.min())}..{int(target.max())}")
    if label_mask is None:
        return None
    if label_mask.shape != (b, c) or label_mask.dtype != torch.bool:
        raise ValueError(f"label_mask must be a bool tensor of shape {(b, c)}, got "
                         f"{label_mask.dtype} {tuple(label_mask.shape)}")
    mask = label_mask.to(logits.device).clone()
    if bool(mask.all()):
        return None
    partial = ~mask.all(dim=1)
    mask[partial, 0] = False
    present = F.one_hot(target.reshape(b, -1), c).amax(dim=1).bool()
    stray = present & ~mask
    stray[:, 0] = False
    if bool(stray.any()):
        bad = stray.nonzero()[0].tolist()
        raise ValueError(f"sample {bad[0]} has pixels of class {bad[1]}, which its label_mask "
                         f"marks as not annotated")
    return mask


def _dice_per_class(probs: torch.Tensor, onehot: torch.Tensor, eps: float) -> torch.Tensor:
    """Soft Dice ``(2|P.G| + eps) / (|P| + |G| + eps)`` per sample and class: ``B x C``."""
    dims = (2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return (2.0 * inter + eps) / (denom + eps)


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    label_mask: torch.Tensor | None = None,
    include_background: bool = False,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Mean over the batch of ``1 - soft Dice``, Dice taken per sample and per class.

    Per sample, Dice is averaged over the classes that count (annotated ones, background only
    if ``include_background`` and the sample is fully labelled); the loss is the mean over the
    samples that have at least one such class (0 with a gradient path if none has). Computing
    Dice per sample keeps small structures of one slice from being swamped by large ones of
    another (batch-pooled Dice would).

    ``eps`` is added to numerator and denominator (MONAI's ``smooth_nr``/``smooth_dr``): a class
    absent from both target and prediction scores Dice 1 (loss 0) instead of 0/0; a class
    absent from the target but predicted with total probability ``s`` costs ``s / (s + eps)``,
    close to 1 for any real prediction, with a vanishing gradient, so it adds a near-constant
    rather than a strong push. With ``label_mask`` None this equals MONAI's
    ``DiceLoss(to_onehot_y=True, softmax=True, batch=False)`` with the same options.
    """
    mask = _check(logits, target, label_mask)
    b, c = logits.shape[:2]
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), c).permute(0, 3, 1, 2).to(probs.dtype)
    dice = _dice_per_class(probs, onehot, eps)
    counts = torch.ones(b, c, dtype=torch.bool, device=logits.device) if mask is None else mask
    if not include_background:
        counts = counts.clone()
        counts[:, 0] = False
    weights = counts.to(dice.dtype)
    n_classes = weights.sum(dim=1)
    used = n_classes > 0
    if not bool(used.any()):
        return logits.sum() * 0.0
    per_sample = ((1.0 - dice) * weights).sum(dim=1)[used] / n_classes[used]
    return per_sample.mean()


def marginal_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    label_mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy that merges unannotated classes with background (see the module doc).

    ``reduction`` is ``"mean"`` (over all pixels of the batch, like ``F.cross_entropy``),
    ``"sum"`` or ``"none"`` (``B x H x W``). Equal to ``F.cross_entropy`` when ``label_mask``
    is None or all True.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    mask = _check(logits, target, label_mask)
    target = target.long()
    if mask is None:
        return F.cross_entropy(logits, target, reduction=reduction)
    logp = torch.log_softmax(logits, dim=1)
    # Merged "other" set per sample: background plus every unannotated class. For a fully
    # labelled sample it is just {background}, which reduces to the ordinary -log p_0.
    other = ~mask
    other[:, 0] = True
    log_other = logp.masked_fill(~other[:, :, None, None], float("-inf")).logsumexp(dim=1)
    log_target = logp.gather(1, target[:, None]).squeeze(1)
    loss = -torch.where(target == 0, log_other, log_target)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class DiceCELoss(nn.Module):
    """``dice_weight * soft_dice_loss + ce_weight * marginal_cross_entropy`` (defaults 1, 1).

    ``forward(logits, target, label_mask=None)``; with ``label_mask`` None or all True it is
    the ordinary per-sample soft Dice plus ``F.cross_entropy`` (MONAI's ``DiceCELoss`` with
    ``to_onehot_y=True, softmax=True``).
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0,
                 include_background: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        if dice_weight < 0 or ce_weight < 0:
            raise ValueError("loss weights must be non-negative")
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.include_background = include_background
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                label_mask: torch.Tensor | None = None) -> torch.Tensor:
        dice = soft_dice_loss(logits, target, label_mask, self.include_background, self.eps)
        ce = marginal_cross_entropy(logits, target, label_mask)
        return self.dice_weight * dice + self.ce_weight * ce
