"""CRF-as-RNN: grid and separable filters vs the exact O(N^2) dense CRF, gradients, denoising."""

from __future__ import annotations

import pytest
import torch

from napari_paraspinal.nets.crf import CRFasRNN, CRFConfig
from napari_paraspinal.nets.crf_filters import BilateralGrid, bilateral_message, spatial_message
from napari_paraspinal.nets.crf_reference import (
    dense_meanfield_bruteforce,
    dense_message_bruteforce,
)


def regions(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A 1 x 1 x H x W slice with three intensity regions and mild noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.full((h, w), 0.2)
    image[(yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 4) ** 2] = 0.6
    image[xx > 0.7 * w] = 0.9
    return (image + 0.02 * torch.randn(h, w, generator=g)).view(1, 1, h, w)


def marginals(b: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(b, c, h, w, generator=g)).softmax(1)


def errors(approx: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """Relative L2 error and max abs error over the largest exact value."""
    rel = ((approx - exact).norm() / exact.norm()).item()
    peak = ((approx - exact).abs().max() / exact.abs().max()).item()
    return rel, peak


@pytest.mark.parametrize("size", [24, 32])
def test_spatial_message_is_exact(size: int) -> None:
    q = marginals(2, 9, size, size)
    exact, _ = dense_message_bruteforce(q, regions(size, size).expand(2, -1, -1, -1), 8, 0.1, 3)
    rel, peak = errors(spatial_message(q, 3.0), exact)
    assert rel < 1e-4 and peak < 1e-3  # measured 3e-5 / 2e-4: truncation at 4 sigma


@pytest.mark.parametrize("size", [24, 32])
@pytest.mark.parametrize(("alpha", "beta"), [(8.0, 0.1), (40.0, 0.1), (16.0, 0.2), (5.0, 0.1)])
def test_bilateral_grid_matches_dense_kernel(size: int, alpha: float, beta: float) -> None:
    image = regions(size, size)
    for q in (marginals(1, 9, size, size), torch.ones(1, 1, size, size)):
        _, exact = dense_message_bruteforce(q, image, alpha, beta, 3.0)
        rel, peak = errors(bilateral_message(q, image, alpha, beta), exact)
        assert rel < 0.03 and peak < 0.08  # measured at most 0.021 / 0.059 (gain is analytic)


def test_coarser_grid_is_worse_but_bounded() -> None:
    image, q = regions(32, 32), marginals(1, 9, 32, 32)
    _, exact = dense_message_bruteforce(q, image, 8.0, 0.1, 3.0)
    fine, _ = errors(bilateral_message(q, image, 8.0, 0.1, 0.5, 0.5), exact)
    coarse, _ = errors(bilateral_message(q, image, 8.0, 0.1, 1.0, 1.0), exact)
    assert fine < coarse < 0.15  # measured 0.013 / 0.075


def test_splat_is_transpose_of_slice() -> None:
    image = torch.rand(2, 1, 13, 11, generator=torch.Generator().manual_seed(3))
    grid = BilateralGrid(image, 6.0, 0.1)
    cells = torch.eye(grid.n_cells, dtype=image.dtype)
    pixels = torch.eye(2 * 13 * 11, dtype=image.dtype)
    assert torch.equal(grid.splat(pixels), grid.slice(cells).t())
    assert torch.allclose(grid.slice_matrix.to_dense().sum(1), torch.ones(2 * 13 * 11))


def test_grid_message_gradcheck() -> None:
    image = torch.rand(2, 1, 6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grid = BilateralGrid(image, 3.0, 0.2)
    q = torch.rand(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(grid.message, (q,))


def pair_of_slices(size: int) -> torch.Tensor:
    return torch.cat([regions(size, size), regions(size, size, 5).flip(-1)])


@pytest.mark.parametrize("size", [24, 32])
def test_meanfield_matches_bruteforce(size: int) -> None:
    image = pair_of_slices(size)
    unary = 2 * torch.randn(2, 9, size, size, generator=torch.Generator().manual_seed(2))
    cfg = CRFConfig(theta_alpha=8.0)
    with torch.no_grad():
        out = CRFasRNN(9, cfg)(unary, image)
    ref = dense_meanfield_bruteforce(unary, image, cfg)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.98  # measured 0.991 / 0.999

    weak = CRFConfig(theta_alpha=8.0, spatial_weight=0.03, bilateral_weight=0.03)
    with torch.no_grad():
        out = CRFasRNN(9, weak)(unary, image)
    ref = dense_meanfield_bruteforce(unary, image, weak)
    assert (out.argmax(1) == ref.argmax(1)).float().mean() >= 0.995  # measured 0.999 / 1.0
    assert (out.softmax(1) - ref.softmax(1)).abs().max() < 0.01  # measured 0.0017 / 0.0033


def test_gradients_reach_unary_and_parameters() -> None:
    crf = CRFasRNN(4, CRFConfig(theta_alpha=10.0, iterations=3))
    unary = torch.randn(2, 4, 20, 24, requires_grad=True)
    target = torch.randint(0, 4, (2, 20, 24))
    loss = torch.nn.functional.cross_entropy(crf(unary, torch.rand(2, 1, 20, 24)), target)
    loss.backward()
    for grad in (unary.grad, crf.compatibility.grad, crf.spatial_weight.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert crf.bilateral_weight.grad is not None and crf.bilateral_weight.grad.abs().sum() > 0


def test_denoises_a_two_region_slice() -> None:
    h = w = 48
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    truth = (((yy - 24) ** 2 + (xx - 20) ** 2) < 14**2).long()
    g = torch.Generator().manual_seed(0)
    image = (0.25 + 0.5 * truth + 0.03 * torch.randn(h, w, generator=g)).view(1, 1, h, w)
    onehot = torch.nn.functional.one_hot(truth, 2).permute(2, 0, 1).float()[None]
    unary = onehot + 2.0 * torch.randn(1, 2, h, w, generator=g)
    with torch.no_grad():
        refined = CRFasRNN(2)(unary, image)
    before = (unary.argmax(1)[0] == truth).float().mean().item()
    after = (refined.argmax(1)[0] == truth).float().mean().item()
    assert before < 0.7 and after > 0.98  # measured 0.65 -> 1.0


def test_shapes_batch_and_potts_init() -> None:
    crf = CRFasRNN(9)
    assert torch.equal(crf.compatibility.detach(), 1 - torch.eye(9))
    assert torch.equal(crf.spatial_weight.detach(), torch.full((9,), 3.0))
    assert torch.equal(crf.bilateral_weight.detach(), torch.full((9,), 5.0))
    unary = torch.randn(3, 9, 40, 36)
    image = torch.rand(3, 1, 40, 36)
    with torch.no_grad():
        out = crf(unary, image)
        single = crf(unary[1:2], image[1:2])
    assert out.shape == unary.shape and out.dtype == torch.float32
    assert torch.allclose(out[1:2], single, atol=1e-4)
    with pytest.raises(ValueError, match="unary"):
        crf(torch.randn(1, 4, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="image"):
        crf(torch.randn(1, 9, 8, 8), torch.rand(1, 1, 8, 9))
    for bad in (float("nan"), float("inf"), -float("inf")):
        image = torch.rand(1, 1, 8, 8)
        image[0, 0, 3, 5] = bad
        with pytest.raises(ValueError, match="finite"):
            crf(torch.randn(1, 9, 8, 8), image)


def test_ones_message_and_training_path_match_the_plain_ones() -> None:
    """The all-ones normaliser (one splat, blur and slice) and the autograd path give the same
    values; a CRF run in inference mode can then be trained."""
    image = torch.rand(2, 1, 17, 23, generator=torch.Generator().manual_seed(5))
    grid = BilateralGrid(image, 6.0, 0.1)
    ones = torch.ones(2, 1, 17, 23)
    assert torch.allclose(grid.ones_message(), grid.message(ones), atol=1e-5)
    crf = CRFasRNN(9, CRFConfig(theta_alpha=6.0))
    unary = torch.randn(2, 9, 17, 23, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():  # also builds the cached spatial filter for this size
        plain = crf(unary, image)
    trained = crf(unary.requires_grad_(), image)
    assert torch.allclose(plain, trained.detach(), atol=1e-5)
    trained.sum().backward()  # filters built in inference mode must not reach training
    assert unary.grad is not None and torch.isfinite(unary.grad).all()
