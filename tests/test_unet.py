"""U-Net: shapes, the classic 23 conv layers, norm options, input checks, config round trip.

Trainable parameters (9 classes, one input channel, batch/instance/group norm), measured:
base_width 8: 486,481; 16: 1,942,425; 32: 7,762,729; 64: 31,037,001 (the paper's ~31 M;
not built here, too slow). With norm "none" (conv biases instead): 8: 485,745.
"""

from __future__ import annotations

import json

import pytest
import torch

from napari_paraspinal.core.config import config_from_dict, config_to_dict
from napari_paraspinal.nets.unet import (
    NORMS,
    UNet,
    UNetConfig,
    count_conv_layers,
    count_parameters,
)

PARAMS = {8: 486_481, 16: 1_942_425, 32: 7_762_729}


@pytest.mark.parametrize(("size", "width"), [(256, 8), (64, 16)])
def test_output_shape(size: int, width: int) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_width=width))
    with torch.inference_mode():
        out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 9, size, size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_rectangular_input_and_channels() -> None:
    model = UNet(UNetConfig(in_channels=2, num_classes=3, base_width=8)).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 2, 48, 80)).shape == (1, 3, 48, 80)


@pytest.mark.parametrize("width", sorted(PARAMS))
def test_classic_23_conv_layers_and_parameter_count(width: int) -> None:
    model = UNet(UNetConfig(base_width=width))
    assert count_conv_layers(model) == 23
    kernels = sorted(m.kernel_size for m in model.modules()
                     if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
    assert kernels.count((3, 3)) == 18 and kernels.count((2, 2)) == 4
    assert kernels.count((1, 1)) == 1
    assert count_parameters(model) == PARAMS[width]


@pytest.mark.parametrize("norm", NORMS)
def test_each_norm_trains_a_step(norm: str) -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_width=8, norm=norm, dropout=0.1))
    x, y = torch.randn(2, 1, 32, 32), torch.randint(0, 9, (2, 32, 32))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.inference_mode():
        assert model(x).shape == (2, 9, 32, 32)


def test_kaiming_init() -> None:
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_width=32, norm="none"))
    conv = model.down[1][0]  # 3x3, 32 -> 64 channels: fan-in 288
    assert conv.weight.std().item() == pytest.approx((2 / 288) ** 0.5, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0


@pytest.mark.parametrize("shape", [(1, 1, 250, 256), (1, 1, 256, 24), (1, 1, 8, 8)])
def test_bad_size_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="multiples of 16"):
        UNet(UNetConfig(base_width=8))(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 32, 32), (1, 3, 32, 32)])
def test_bad_layout_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        UNet(UNetConfig(base_width=8))(torch.zeros(shape))


@pytest.mark.parametrize("bad", [{"norm": "layer"}, {"base_width": 0}, {"dropout": 1.0},
                                 {"num_classes": 1}, {"base_width": 16.0}, {"depth": 5}])
def test_bad_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        config_from_dict(UNetConfig, {**config_to_dict(UNetConfig()), **bad})


def test_config_round_trip_through_json() -> None:
    model = UNet(UNetConfig(base_width=8, norm="group", dropout=0.2))
    card_entry = json.loads(json.dumps(model.to_dict()))
    assert card_entry == {"in_channels": 1, "num_classes": 9, "base_width": 8,
                          "norm": "group", "dropout": 0.2}
    rebuilt = UNet.from_dict(card_entry)
    assert rebuilt.config == model.config
    state = model.state_dict()
    assert list(rebuilt.state_dict()) == list(state)
    rebuilt.load_state_dict(state)
    model.eval()
    rebuilt.eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(model(x), rebuilt(x))
