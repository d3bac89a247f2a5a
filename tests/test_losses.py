"""Soft Dice (per sample), cross-entropy and partial-label (marginal) losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_paraspinal.nets.losses import DiceCELoss, marginal_cross_entropy, soft_dice_loss

SHARP = 30.0  # logit scale that makes softmax one-hot to within ~1e-13


def sharp_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits whose softmax is (almost exactly) the one-hot of ``labels`` (B x H x W)."""
    return SHARP * F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def random_case(seed: int = 0, b: int = 2, c: int = 9, size: int = 32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, size, size, generator=g) * 3
    target = torch.randint(0, c, (b, size, size), generator=g)
    return logits, target


def halves(b: int = 1, size: int = 16) -> torch.Tensor:
    """Label map with class 1 on the left half and class 2 on the right half."""
    target = torch.ones(b, size, size, dtype=torch.long)
    target[..., size // 2:] = 2
    return target


def test_perfect_prediction_is_near_zero() -> None:
    target = halves(2)
    target[:, :4] = 0
    logits = sharp_logits(target, 3)
    for include_background in (False, True):
        assert soft_dice_loss(logits, target, include_background=include_background) < 1e-6
    assert DiceCELoss()(logits, target) < 1e-6


def test_disjoint_prediction_is_near_one() -> None:
    target = halves(2)
    swapped = 3 - target  # 1 <-> 2: every foreground pixel wrong
    loss = soft_dice_loss(sharp_logits(swapped, 3), target)
    assert loss.item() == pytest.approx(1.0, abs=1e-6)


def test_class_absent_from_target_and_prediction_counts_as_perfect() -> None:
    target = halves(1)
    logits = sharp_logits(target, 4)  # class 3 nowhere: (0 + eps) / (0 + eps) = 1
    assert soft_dice_loss(logits, target) < 1e-6


def test_per_sample_dice_differs_from_batch_pooled() -> None:
    # Sample 0: 100-pixel structure found exactly. Sample 1: 4-pixel structure missed (4 other
    # pixels predicted). Per sample: Dice 1 and 0, loss 0.5. Pooled over the batch the large
    # structure swamps the small one: Dice = 2*100 / (104 + 104), loss 1/26.
    target = torch.zeros(2, 16, 16, dtype=torch.long)
    target[0, :10, :10] = 1
    target[1, :2, :2] = 1
    pred = target.clone()
    pred[1] = 0
    pred[1, -2:, -2:] = 1
    logits = sharp_logits(pred, 2)
    per_sample = soft_dice_loss(logits, target)
    probs = torch.softmax(logits, 1)[:, 1]
    gt = (target == 1).float()
    pooled = 1 - (2 * (probs * gt).sum() + 1e-5) / (probs.sum() + gt.sum() + 1e-5)
    assert per_sample.item() == pytest.approx(0.5, abs=1e-6)
    assert pooled.item() == pytest.approx(1 / 26, abs=1e-6)


@pytest.mark.parametrize("include_background", [False, True])
def test_matches_monai(include_background: bool) -> None:
    losses = pytest.importorskip("monai.losses")
    logits, target = random_case()
    target[1, target[1] == 5] = 0  # a class absent from one sample
    opts = {"include_background": include_background, "to_onehot_y": True, "softmax": True}
    ref_dice = losses.DiceLoss(**opts, smooth_nr=1e-5, smooth_dr=1e-5, batch=False)
    ours = soft_dice_loss(logits, target, include_background=include_background)
    assert ours.item() == pytest.approx(ref_dice(logits, target[:, None]).item(), abs=1e-5)
    ref = losses.DiceCELoss(**opts, smooth_nr=1e-5, smooth_dr=1e-5, lambda_dice=1.0,
                            lambda_ce=1.0)
    ours = DiceCELoss(include_background=include_background)(logits, target)
    assert ours.item() == pytest.approx(ref(logits, target[:, None]).item(), abs=1e-5)


def test_all_true_mask_is_exactly_the_ordinary_loss() -> None:
    logits, target = random_case(1)
    full = torch.ones(2, 9, dtype=torch.bool)
    assert torch.equal(marginal_cross_entropy(logits, target, full),
                       F.cross_entropy(logits, target))
    assert torch.equal(soft_dice_loss(logits, target, full), soft_dice_loss(logits, target))
    assert torch.equal(DiceCELoss()(logits, target, full), DiceCELoss()(logits, target))
    weighted = DiceCELoss(dice_weight=0.5, ce_weight=2.0)(logits, target)
    expected = 0.5 * soft_dice_loss(logits, target) + 2.0 * F.cross_entropy(logits, target)
    assert torch.equal(weighted, expected)


def partial_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Classes 0..2; sample 0 annotates only class 1, and class 2 really lies at target 0."""
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, :, :5] = 1
    truth = target.clone()
    truth[0, :, 10:] = 2  # present in the image, not in the annotation
    mask = torch.tensor([[False, True, False]])
    return sharp_logits(truth, 3), target, mask


def test_unannotated_structure_at_target_zero_is_not_penalised() -> None:
    logits, target, mask = partial_case()
    assert marginal_cross_entropy(logits, target, mask).item() < 1e-6
    assert marginal_cross_entropy(logits, target).item() > 5.0  # fully labelled: wrong
    assert soft_dice_loss(logits, target, mask).item() < 1e-6  # Dice over class 1 only
    assert soft_dice_loss(logits, target).item() > 0.4  # class 2 predicted, absent


def test_partial_loss_is_marginal_likelihood() -> None:
    logits, target = random_case(2, b=1, c=3)
    target[target == 2] = 0
    mask = torch.tensor([[True, True, False]])  # background entry ignored when partial
    probs = torch.softmax(logits, 1)[0]
    merged = probs[0] + probs[2]
    expected = -torch.where(target[0] == 1, probs[1], merged).log()
    got = marginal_cross_entropy(logits, target, mask, reduction="none")[0]
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_mixed_batch_keeps_full_samples_ordinary_and_gradients_finite() -> None:
    logits, target = random_case(3, b=3, c=9)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1] = False
    mask[1, [5, 6, 7, 8]] = True  # multifidus and erector spinae only
    target[1, (target[1] > 0) & (target[1] < 5)] = 0
    mask[2] = False  # nothing annotated: no Dice term, CE ~0
    target[2] = 0
    logits.requires_grad_(True)
    per_pixel = marginal_cross_entropy(logits, target, mask, reduction="none")
    ordinary = F.cross_entropy(logits[:1], target[:1], reduction="none")[0]
    assert torch.allclose(per_pixel[0], ordinary, rtol=0, atol=1e-6)
    assert per_pixel[2].abs().max() < 1e-6  # log(sum of all probabilities)
    loss = DiceCELoss()(logits, target, mask)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0].abs().sum() > 0
    dice_two = soft_dice_loss(logits[:2], target[:2], mask[:2])
    assert torch.allclose(soft_dice_loss(logits, target, mask), dice_two, atol=1e-7)


def test_nothing_annotated_gives_zero_with_gradient_path() -> None:
    logits, target = random_case(4, b=1, c=3)
    logits.requires_grad_(True)
    loss = DiceCELoss()(logits, torch.zeros_like(target), torch.zeros(1, 3, dtype=torch.bool))
    loss.backward()
    assert abs(loss.item()) < 1e-6 and logits.grad.abs().max() < 1e-6


def test_bad_inputs_are_refused() -> None:
    logits, target = random_case(5, b=1, c=3)
    with pytest.raises(ValueError, match="0..2"):
        soft_dice_loss(logits, target + 1)
    with pytest.raises(ValueError, match="B x H x W"):
        soft_dice_loss(logits, target[:, :8])
    with pytest.raises(ValueError, match="integer"):
        marginal_cross_entropy(logits, target.float())
    with pytest.raises(ValueError, match="label_mask"):
        marginal_cross_entropy(logits, target, torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="class 2"):  # annotated pixels of an unlabelled class
        marginal_cross_entropy(logits, target, torch.tensor([[True, True, False]]))
