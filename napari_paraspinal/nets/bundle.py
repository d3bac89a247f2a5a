"""Model bundles: a folder with ``weights.safetensors`` and ``card.json``, never a pickle.

The card says everything needed to rebuild and trust the model: the label table, the network
keyword arguments, the preprocessing (and the atlases stored beside the weights), the
training data and configuration, metrics, parent model, software versions and the weights'
SHA-256. Bundles are written to a temporary folder and renamed into place, so a reader never
sees half a bundle.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from ..core.atomic import sha256_of
from ..core.errors import InputError
from ..core.labels import LABELS

WEIGHTS = "weights.safetensors"
CARD = "card.json"
CARD_FORMAT = 1


@dataclass
class ModelCard:
    """What a model is, how it was made, and how well it does (JSON-friendly)."""

    name: str
    version: str = "1"
    network: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    parent: str | None = None
    labels: list[dict] = field(default_factory=lambda: [
        {"value": lab.value, "short": lab.short, "name": lab.name} for lab in LABELS
    ])
    software: dict = field(default_factory=lambda: {
        "napari-paraspinal": __version__, "torch": torch.__version__,
        "python": platform.python_version(),
    })
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    weights_sha256: str = ""
    format: int = CARD_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def save_bundle(
    directory: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor],
    card: ModelCard,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write weights, card and extra files (e.g. atlases) as one bundle folder, atomically.

    An existing bundle at ``directory`` is refused: versions are never overwritten.
    """
    target = Path(directory)
    if target.exists():
        raise FileExistsError(f"{target}: a model bundle already exists here")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS))
        card.weights_sha256 = sha256_of(tmp / WEIGHTS)
        for name, src in (extra_files or {}).items():
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if Path(src).is_dir():
                shutil.copytree(src, dest)
            else:
                shutil.copy2(src, dest)
        (tmp / CARD).write_text(card.to_json(), encoding="utf-8")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def load_card(directory: str | os.PathLike[str]) -> ModelCard:
    """Read and check a bundle's card (no weights loaded)."""
    path = Path(directory) / CARD
    try:
        return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as err:
        raise InputError(directory, "not a model bundle: card.json is missing") from err
    except (json.JSONDecodeError, TypeError) as err:
        raise InputError(path, f"model card is not valid JSON: {err}") from err


def load_bundle(directory: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Weights (safetensors only) and card of a bundle; the weights' hash must match."""
    card = load_card(directory)
    weights = Path(directory) / WEIGHTS
    if not weights.is_file():
        raise InputError(directory, f"not a model bundle: {WEIGHTS} is missing")
    if card.weights_sha256 and sha256_of(weights) != card.weights_sha256:
        raise InputError(weights, "weights do not match the card's SHA-256 (corrupt or "
                                  "replaced file)")
    try:
        return load_file(str(weights)), card
    except Exception as err:  # safetensors raises its own error types
        raise InputError(weights, f"cannot read the weights: {err}") from err
