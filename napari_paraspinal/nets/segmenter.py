"""The segmentation model: a U-Net whose logits are optionally refined by a CRF-as-RNN.

The CRF uses the network's own input image as its bilateral guide, so the model needs nothing
but the (atlas-space, normalised) slice. :meth:`Segmenter.to_dict` holds the whole architecture
(U-Net and CRF configs, filled in with every default), so a model card's ``network`` entry plus
the weights rebuilds the model: ``Segmenter.from_dict(card.network).load_state_dict(weights)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.config import config_from_dict, config_to_dict
from .crf import CRFasRNN, CRFConfig
from .unet import UNet, UNetConfig

#: What the network sees. Only the normalised slice for now; recorded so a model card says it.
INPUTS = ("image",)


#: Arithmetic the network may run in at inference.
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Asking for CUDA on a machine without it is an error rather than a silent CPU fallback, so
    a user who expects a GPU run learns at once that it would not be one.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available "
                           f"(torch {torch.__version__}); use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use 'auto', 'cpu' or 'cuda'")
    return dev


@dataclass(frozen=True)
class SegmenterConfig:
    """Architecture of a :class:`Segmenter` (JSON-friendly).

    ``unet`` and ``crf`` are keyword dicts for :class:`UNetConfig` and :class:`CRFConfig`
    (empty means the defaults); ``use_crf`` False builds no CRF at all (no CRF weights).
    """

    unet: dict[str, Any] = field(default_factory=dict)
    crf: dict[str, Any] = field(default_factory=dict)
    use_crf: bool = True
    input: str = "image"

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"SegmenterConfig.input must be one of {INPUTS}, got {self.input!r}")
        if not isinstance(self.use_crf, bool):
            raise ValueError(f"SegmenterConfig.use_crf must be a bool, got {self.use_crf!r}")
        unknown = set(self.crf) - {f.name for f in fields(CRFConfig)}
        if unknown:
            raise ValueError(f"unknown CRF config keys: {sorted(unknown)}")


class Segmenter(nn.Module):
    """U-Net (+ CRF-as-RNN): ``B x 1 x H x W`` image in, ``B x C x H x W`` logits out."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        super().__init__()
        config = config if config is not None else SegmenterConfig()
        unet_config = config_from_dict(UNetConfig, config.unet)
        if unet_config.in_channels != 1:
            raise ValueError("the segmenter takes one image channel (UNetConfig.in_channels=1)")
        self.unet = UNet(unet_config)
        self.crf = (CRFasRNN(unet_config.num_classes, CRFConfig(**config.crf))
                    if config.use_crf else None)
        self.config = SegmenterConfig(
            unet=config_to_dict(unet_config),
            crf=config_to_dict(self.crf.config) if self.crf is not None else dict(config.crf),
            use_crf=config.use_crf,
            input=config.input,
        )

    @property
    def num_classes(self) -> int:
        return self.unet.config.num_classes

    def unet_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net's logits alone (the CRF bypassed)."""
        return self.unet(x)

    def forward(self, x: torch.Tensor, use_crf: bool | None = None) -> torch.Tensor:
        """Logits, CRF-refined when ``use_crf`` (default: the config's) with ``x`` as guide."""
        use_crf = self.config.use_crf if use_crf is None else use_crf
        logits = self.unet(x)
        if not use_crf:
            return logits
        if self.crf is None:
            raise ValueError("this segmenter was built without a CRF (use_crf=False)")
        return self.crf(logits, x)

    def predict_proba(
        self,
        images: np.ndarray | torch.Tensor,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        precision: str = "float32",
    ) -> np.ndarray:
        """Class probabilities ``N x C x H x W`` (float32) of slices ``N x H x W`` or N x 1 x H x W.

        Runs in eval mode under ``torch.inference_mode`` in batches of ``batch_size``; the model
        is moved to ``device`` (and stays there) and its previous train/eval mode is restored.
        ``precision="bfloat16"`` runs the network under autocast: faster where the processor
        has bfloat16 arithmetic, with probabilities a little different from float32's, so
        results then depend on the machine (float32, the default, does not round them).
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, not {precision!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor)
                            else images)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"images must be N x H x W, got shape {tuple(x.shape)}")
        dev = resolve_device(device)
        self.to(dev)
        was_training = self.training
        self.eval()
        out = np.empty((x.shape[0], self.num_classes, *x.shape[2:]), dtype=np.float32)
        try:
            with torch.inference_mode():
                for start in range(0, x.shape[0], batch_size):
                    batch = x[start:start + batch_size].to(dev, torch.float32)
                    with torch.autocast(dev.type, dtype=PRECISIONS[precision],
                                        enabled=precision != "float32"):
                        logits = self(batch)
                    probs = torch.softmax(logits.float(), dim=1)
                    out[start:start + batch.shape[0]] = probs.cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The full architecture as a plain dict (for a model card's ``network`` entry)."""
        return config_to_dict(self.config)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Segmenter:
        """A freshly initialised segmenter from :meth:`to_dict` output (load weights after)."""
        return cls(config_from_dict(SegmenterConfig, d))
