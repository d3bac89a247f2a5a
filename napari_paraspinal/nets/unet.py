"""2-D U-Net (Ronneberger et al. 2015) for axial slices, with "same" padding.

Five resolution levels (four 2x2 max-pool steps down, four 2x2 transposed-conv steps up), each
level two 3x3 conv + norm + ReLU, skip connections by concatenation, a final 1x1 conv to the
class logits. Counted the classic way that is 23 convolution layers: 18 3x3 convs, 4 up-convs
and the 1x1 head (:func:`count_conv_layers`). Unlike the original (valid convolutions, 572 in,
388 out) the output has the input's size, so input height and width must be multiples of 16.

The network is rebuilt from :class:`UNetConfig` alone (``UNet.from_dict(model.to_dict())``), so
a model card's ``network`` entry plus the weights is the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.config import config_from_dict, config_to_dict

NORMS = ("batch", "instance", "group", "none")
DEPTH = 4  # resolution steps down (and up); the input must be divisible by 2**DEPTH


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet` (JSON-friendly).

    ``base_width`` is the number of channels at full resolution (doubling at each level down:
    16 gives 16-32-64-128-256; the original paper used 64). ``dropout`` is the channel dropout
    applied at the end of the contracting path, as in the paper.
    """

    in_channels: int = 1
    num_classes: int = 9
    base_width: int = 16
    norm: str = "batch"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_classes", "base_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"UNetConfig.num_classes must be at least 2, got {self.num_classes}")
        if self.norm not in NORMS:
            raise ValueError(f"UNetConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout!r}")


def _group_count(channels: int, max_groups: int = 8) -> int:
    """Largest group count <= ``max_groups`` dividing ``channels`` (GroupNorm needs that)."""
    return next(g for g in range(min(max_groups, channels), 0, -1) if channels % g == 0)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(_group_count(channels), channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """Two (3x3 conv, norm, ReLU) with same padding; convs have a bias only without norm."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias), _norm(norm, out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias), _norm(norm, out_ch),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """2x2 transposed conv halving the channels, concatenation with the skip, DoubleConv."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        super().__init__()
        self.upconv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.upconv(x)], dim=1))


class UNet(nn.Module):
    """U-Net returning logits ``B x num_classes x H x W`` for input ``B x in_channels x H x W``."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else UNetConfig()
        c = self.config
        widths = [c.base_width * 2**i for i in range(DEPTH + 1)]
        self.down = nn.ModuleList(
            [DoubleConv(c.in_channels, widths[0], c.norm)]
            + [DoubleConv(widths[i - 1], widths[i], c.norm) for i in range(1, DEPTH)]
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[DEPTH - 1], widths[DEPTH], c.norm)
        self.dropout = nn.Dropout2d(c.dropout) if c.dropout > 0 else nn.Identity()
        self.up = nn.ModuleList(
            [Up(widths[i + 1], widths[i], c.norm) for i in reversed(range(DEPTH))]
        )
        self.head = nn.Conv2d(widths[0], c.num_classes, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan-in, ReLU gain) conv weights and zero biases, as in the paper."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for block, skip in zip(self.up, reversed(skips), strict=True):
            x = block(x, skip)
        return self.head(x)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"U-Net input must be B x {self.config.in_channels} x H x W, "
                             f"got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        step = 2**DEPTH
        if h < step or w < step or h % step or w % step:
            raise ValueError(f"U-Net input height and width must be positive multiples of "
                             f"{step}, got {h} x {w} (pad or crop the slice first)")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (for a model card's ``network`` entry)."""
        return config_to_dict(self.config)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNet:
        """A freshly initialised U-Net from a config dict (load weights afterwards)."""
        return cls(config_from_dict(UNetConfig, d))


def count_conv_layers(model: nn.Module) -> int:
    """Number of convolution layers (2-D convs and transposed convs) in ``model``."""
    return sum(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in model.modules())


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
