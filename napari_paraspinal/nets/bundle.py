"""Model bundles: a folder with ``weights.safetensors`` and ``card.json``, never a pickle.

The card says everything needed to rebuild and trust the model: the label table, the network
keyword arguments, the preprocessing (and the atlases stored beside the weights), the
training data and configuration, metrics, parent model, software versions, and the SHA-256
of every file (``weights_sha256``, ``files_sha256``). Bundles are written to a temporary
folder and renamed into place, so a reader never sees half a bundle.

A bundle is untrusted input: the card is size-capped and checked against a schema
(:mod:`.card`), every file is confined to the folder, read only if it is a regular file, and
must match its hash; a hash can never be left out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

from ..core.atomic import sha256_of
from ..core.bundlefiles import BundleError, check_sha256, confined, read_json, read_regular
from ..core.errors import InputError
from ..preprocess.atlas import atlas_files
from .card import CARD_FORMAT, ModelCard, validate_card

__all__ = ["CARD", "CARD_FORMAT", "WEIGHTS", "ModelCard", "atlas_hashes", "load_bundle",
           "load_card", "save_bundle", "verify_bundle_files"]

WEIGHTS = "weights.safetensors"
CARD = "card.json"
ATLASES = "atlases"
MAX_CARD_BYTES = 4 << 20
MAX_WEIGHTS_BYTES = 1 << 30
MAX_FILE_BYTES = 64 << 20


def save_bundle(
    directory: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor],
    card: ModelCard,
    extra_files: dict[str, Path] | None = None,
) -> Path:
    """Write weights, card and extra files (e.g. atlases) as one bundle folder, atomically.

    The card written holds the SHA-256 of the weights and of every other file, and is
    checked as a reader would check it (a bundle that would not load is never written). An
    existing bundle at ``directory`` is refused: versions are never overwritten.
    """
    target = Path(directory)
    if target.exists():
        raise FileExistsError(f"{target}: a model bundle already exists here")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS))
        for name, src in (extra_files or {}).items():
            dest = confined(tmp, name, f"extra file {name!r}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if Path(src).is_dir():
                shutil.copytree(src, dest)
            else:
                shutil.copy2(src, dest)
        written = {p.relative_to(tmp).as_posix(): p for p in sorted(tmp.rglob("*"))
                   if p.is_file()}
        files = {rel: sha256_of(p) for rel, p in written.items() if rel not in (CARD, WEIGHTS)}
        card = replace(card, weights_sha256=sha256_of(tmp / WEIGHTS), files_sha256=files)
        validate_card(json.loads(card.to_json()), tmp)
        (tmp / CARD).write_text(card.to_json(), encoding="utf-8")
        verify_bundle_files(tmp, card)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def load_card(directory: str | os.PathLike[str]) -> ModelCard:
    """Read and check a bundle's card (no other file read): a regular file of at most
    ``MAX_CARD_BYTES`` of JSON that fits the schema of :mod:`.card`."""
    folder = Path(directory)
    if not os.path.lexists(folder / CARD):
        raise InputError(folder, f"not a model bundle: {CARD} is missing")
    return ModelCard.from_dict(read_json(folder, CARD, MAX_CARD_BYTES), folder)


def verify_bundle_files(directory: str | os.PathLike[str], card: ModelCard) -> None:
    """Check every file the card lists against its SHA-256, and that every atlas file the
    model would read is listed (an atlas slipped in beside the hashed ones is refused)."""
    folder = Path(directory)
    if os.path.lexists(folder / ATLASES):
        root = confined(folder, ATLASES, ATLASES)
        for name in atlas_files(root):
            rel = f"{ATLASES}/{name}"
            if rel not in card.files_sha256:
                raise BundleError(folder, rel, f"is not listed in {CARD} files_sha256 (every "
                                               "file of a bundle must be hashed)")
    for rel, digest in card.files_sha256.items():
        check_sha256(confined(folder, rel, rel), folder, rel, digest, MAX_FILE_BYTES)


def atlas_hashes(card: ModelCard) -> dict[str, str]:
    """The card's hashes of the atlas files, by path relative to the bundle's ``atlases``
    folder: ``load_atlases(bundle / "atlases", atlas_hashes(card))`` checks each file as it
    reads it."""
    prefix = f"{ATLASES}/"
    return {k[len(prefix):]: v for k, v in card.files_sha256.items() if k.startswith(prefix)}


def _check_weights(state: dict[str, torch.Tensor], folder: Path) -> None:
    """Refuse weights no trained model has: non-finite values, or nothing but zeros."""
    floats = [t for t in state.values() if t.is_floating_point()]
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise BundleError(folder, WEIGHTS, f"tensor {key!r} holds NaN or infinite values")
    if floats and not any(bool(t.any()) for t in floats):
        raise BundleError(folder, WEIGHTS, "every weight is zero: not a trained model")


def load_bundle(directory: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Weights (safetensors only) and card of a bundle, after :func:`load_card` and
    :func:`verify_bundle_files`; the weights are hashed from the very bytes loaded."""
    folder = Path(directory)
    card = load_card(folder)
    if not os.path.lexists(folder / WEIGHTS):
        raise InputError(folder, f"not a model bundle: {WEIGHTS} is missing")
    data = read_regular(confined(folder, WEIGHTS, WEIGHTS), folder, WEIGHTS, MAX_WEIGHTS_BYTES)
    if hashlib.sha256(data).hexdigest() != card.weights_sha256:
        raise BundleError(folder, WEIGHTS, "weights do not match the card's SHA-256 (corrupt "
                                           "or replaced file)")
    verify_bundle_files(folder, card)
    try:
        state = load_safetensors(data)
    except Exception as err:  # safetensors raises its own error types
        raise BundleError(folder, WEIGHTS, f"cannot read the weights: {err}") from err
    _check_weights(state, folder)
    return state, card
