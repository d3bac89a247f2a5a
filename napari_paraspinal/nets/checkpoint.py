"""Training checkpoints: safetensors and JSON only, written atomically, so a killed run resumes.

A checkpoint is one folder::

    model.safetensors      current weights (and buffers)
    best.safetensors       best weights so far
    optimizer.safetensors  per-parameter optimizer state, ``state.{index}.{name}`` (e.g.
                           ``state.3.exp_avg``, ``state.3.step``)
    rng.safetensors        random-generator states as tensors (e.g. torch's CPU generator)
    checkpoint.json        the trainer's own state (phase, epoch, history, numpy generator,
                           config...) and the optimizer's ``param_groups`` hyperparameters

Never a pickle: a checkpoint may come from anyone, and unpickling runs code. Loading reads
tensors with safetensors and everything else with :mod:`json`.

Writes are atomic as a whole: the new checkpoint is written to the sibling ``<name>.tmp``,
flushed to disk, then the old folder is renamed to ``<name>.old``, the new one renamed into
place and the old one removed. A crash at any moment leaves either ``<name>`` or ``<name>.old``
complete, and :func:`find_checkpoint` takes whichever is there (``<name>`` first).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..core.atomic import fsync_path
from ..core.bundlefiles import BundleError, read_regular, regular_size
from ..core.errors import InputError

StateDict = dict[str, torch.Tensor]

MODEL = "model.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.safetensors"
RNG = "rng.safetensors"
STATE = "checkpoint.json"
FILES = (MODEL, BEST, OPTIMIZER, RNG, STATE)
FORMAT = "napari-paraspinal-checkpoint"
VERSION = 1
MAX_STATE_BYTES = 256 << 20
MAX_TENSORS_BYTES = 8 << 30


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    ``optimizer_state`` is in :meth:`torch.optim.Optimizer.state_dict` form (give it to
    ``load_state_dict``); ``trainer_state`` is the dict given to :func:`save_checkpoint`.
    """

    folder: Path
    model_state: StateDict
    best_state: StateDict
    optimizer_state: dict[str, Any]
    trainer_state: dict[str, Any]
    rng_state: StateDict


def _sibling(folder: Path, suffix: str) -> Path:
    return folder.with_name(folder.name + suffix)


def _tensors(state: StateDict) -> StateDict:
    """CPU, contiguous copies: safetensors refuses views and shared storage."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def _optimizer_tensors(state: dict[Any, dict[str, Any]]) -> StateDict:
    tensors = {}
    for index, values in state.items():
        for name, value in values.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {index}.{name} is a {type(value).__name__}, "
                                f"not a tensor: cannot be checkpointed")
            tensors[f"state.{index}.{name}"] = value
    return _tensors(tensors)


def save_checkpoint(
    folder: str | os.PathLike[str],
    model_state: StateDict,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    best_state: StateDict,
    rng_state: StateDict | None = None,
) -> Path:
    """Write a checkpoint folder atomically, replacing the previous checkpoint there.

    ``trainer_state`` must be JSON-serialisable (NaN and infinities are allowed);
    ``rng_state`` holds generator states as tensors. A folder at ``folder`` that is not a
    checkpoint is never replaced (FileExistsError).
    """
    folder = Path(folder)
    if folder.exists() and not (folder / STATE).is_file() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not a checkpoint: not replacing it")
    opt = optimizer.state_dict()
    payload = {"format": FORMAT, "version": VERSION, "trainer": trainer_state,
               "optimizer": {"param_groups": opt["param_groups"]}}
    text = json.dumps(payload, indent=1)
    tmp, old = _sibling(folder, ".tmp"), _sibling(folder, ".old")
    folder.parent.mkdir(parents=True, exist_ok=True)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_tensors(model_state), str(tmp / MODEL))
    save_file(_tensors(best_state), str(tmp / BEST))
    save_file(_optimizer_tensors(opt["state"]), str(tmp / OPTIMIZER))
    save_file(_tensors(rng_state or {}), str(tmp / RNG))
    (tmp / STATE).write_text(text, encoding="utf-8")
    for name in FILES:
        fsync_path(tmp / name)
    fsync_path(tmp)
    if folder.exists():
        if old.exists():
            shutil.rmtree(old)
        folder.rename(old)
    tmp.rename(folder)
    fsync_path(folder.parent)
    if old.exists():
        shutil.rmtree(old)
    return folder


def find_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint at ``folder``, else at ``<folder>.old`` (a crash mid-swap)."""
    folder = Path(folder)
    for candidate in (folder, _sibling(folder, ".old")):
        if (candidate / STATE).is_file():
            return candidate
    return None


def _regular(path: Path, cap: int) -> None:
    """A checkpoint file must be a regular file of at most ``cap`` bytes (stat before any
    open: a named pipe in its place would block the resume forever)."""
    try:
        regular_size(path, path.parent, path.name, cap)
    except BundleError as err:
        raise InputError(path, f"corrupt checkpoint: {err.problem}") from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        payload = json.loads(read_regular(path, path.parent, path.name,
                                          MAX_STATE_BYTES).decode("utf-8"))
    except BundleError as err:
        raise InputError(path, f"corrupt checkpoint: {err.problem}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InputError(path, f"corrupt checkpoint: {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(path, "corrupt checkpoint: not a napari-paraspinal checkpoint")
    if payload.get("version") != VERSION:
        raise InputError(path, f"checkpoint version {payload.get('version')!r} is not "
                               f"supported (expected {VERSION})")
    optimizer = payload.get("optimizer")
    groups = optimizer.get("param_groups") if isinstance(optimizer, dict) else None
    if not isinstance(payload.get("trainer"), dict) or not isinstance(groups, list):
        raise InputError(path, "corrupt checkpoint: trainer or optimizer entry missing")
    return payload


def _read_tensors(path: Path) -> StateDict:
    if not os.path.lexists(path):
        raise InputError(path, "corrupt checkpoint: file missing")
    _regular(path, MAX_TENSORS_BYTES)
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own error types
        raise InputError(path, f"corrupt checkpoint: {err}") from err


def _optimizer_state(tensors: StateDict, groups: list[dict[str, Any]],
                     path: Path) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        prefix, index, name = (key.split(".", 2) + ["", ""])[:3]
        if prefix != "state" or not index.isdigit() or not name:
            raise InputError(path, f"corrupt checkpoint: unexpected tensor {key!r}")
        state.setdefault(int(index), {})[name] = value
    # JSON turned tuples (Adam's betas) into lists; "params" stays a list of indices
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v
               for k, v in group.items()} for group in groups]
    return {"state": state, "param_groups": groups}


def load_checkpoint(folder: str | os.PathLike[str]) -> Checkpoint:
    """Read the checkpoint at ``folder`` (or ``<folder>.old``, see :func:`find_checkpoint`).

    FileNotFoundError if there is none; InputError (a ValueError) naming the file if it is
    corrupt.
    """
    found = find_checkpoint(folder)
    if found is None:
        raise FileNotFoundError(f"no checkpoint at {folder}")
    payload = _read_json(found / STATE)
    return Checkpoint(
        folder=found,
        model_state=_read_tensors(found / MODEL),
        best_state=_read_tensors(found / BEST),
        optimizer_state=_optimizer_state(_read_tensors(found / OPTIMIZER),
                                         payload["optimizer"]["param_groups"], found / OPTIMIZER),
        trainer_state=payload["trainer"],
        rng_state=_read_tensors(found / RNG),
    )
