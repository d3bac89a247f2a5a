"""Atlases of a spinal level: the data, and reading and writing it.

An atlas holds, in atlas space (origin at the centre of the labelled structures, x toward
the patient's left, y posterior, mm):

* ``image``: the mean normalised slice on the network grid (256×256 at 1 mm);
* ``probabilities``: per-label probability maps on the same grid (C×256×256);
* ``wide_image`` and ``wide_body``: the mean slice and the body probability on a wide grid
  (256×256 at 2 mm, 512 mm field of view) that holds the whole body outline, for
  registration and its moment initialisation (most bodies are wider than 256 mm).

Building an atlas from labelled slices (``paraspinal atlas build``) is :mod:`.atlas_build`'s
work; this module needs nothing from registration, so registration can use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..core.atomic import atomic_path, write_text_atomic
from ..core.bundlefiles import (
    BundleError,
    check_sha256,
    confined,
    parse_json,
    read_regular,
    regular_size,
)
from ..core.errors import InputError
from ..core.labels import NUM_CLASSES
from .atlas_space import ATLAS_SIZE, atlas_reference

WIDE_SPACING = 2.0
ATLAS_FORMAT = 1
_FILES = {"image": "image.nii.gz", "probabilities": "probabilities.nii.gz",
          "wide_image": "wide_image.nii.gz", "wide_body": "wide_body.nii.gz"}
_SHAPES = {"image": (ATLAS_SIZE, ATLAS_SIZE), "probabilities": (NUM_CLASSES, ATLAS_SIZE,
                                                                 ATLAS_SIZE),
           "wide_image": (ATLAS_SIZE, ATLAS_SIZE), "wide_body": (ATLAS_SIZE, ATLAS_SIZE)}
ATLAS_JSON = "atlas.json"
MAX_ATLAS_JSON_BYTES = 1 << 20
MAX_ATLAS_FILE_BYTES = 64 << 20
_LEVEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


def wide_reference() -> sitk.Image:
    """The registration grid: 256×256 pixels of 2 mm, centred on the atlas origin."""
    return atlas_reference(WIDE_SPACING)


@dataclass
class Atlas:
    """One spinal level's atlas (see the module docstring)."""

    level: str
    image: np.ndarray
    probabilities: np.ndarray
    wide_image: np.ndarray
    wide_body: np.ndarray
    meta: dict = field(default_factory=dict)
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def memo(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per atlas and ``key``: what registration derives from
        the atlas alone (smoothed templates, samples) is the same for every slice. An atlas's
        arrays are not changed after it is made."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def wide_sitk(self) -> sitk.Image:
        """The wide template as a SimpleITK image on its grid."""
        img = sitk.GetImageFromArray(np.asarray(self.wide_image, np.float32))
        img.CopyInformation(wide_reference())
        return img

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the atlas as NIfTI images plus ``atlas.json`` into ``directory``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, filename in _FILES.items():
            array = np.asarray(getattr(self, name), np.float32)
            img = sitk.GetImageFromArray(array)
            if array.ndim == 2:
                ref = wide_reference() if name.startswith("wide") else atlas_reference()
                img.CopyInformation(ref)
            else:
                img.SetSpacing((1.0, 1.0, 1.0))
                ref = atlas_reference()
                img.SetOrigin((*ref.GetOrigin(), 0.0))
            with atomic_path(out / filename) as tmp:
                sitk.WriteImage(img, str(tmp), useCompression=True)
        card = {"format": ATLAS_FORMAT, "level": self.level, "files": _FILES, **self.meta}
        write_text_atomic(out / "atlas.json", json.dumps(card, indent=2))
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str],
             hashes: Mapping[str, str] | None = None) -> Atlas:
        """Read an atlas written by :meth:`save`; see :func:`read_atlas_card` for the checks.

        ``hashes`` (file name relative to ``directory`` → SHA-256, as a model card lists
        them): when given, every file read must be listed there and match.
        """
        d = Path(directory)
        card, digest = read_atlas_card(d)
        if hashes is not None and hashes.get(ATLAS_JSON) != digest:
            raise BundleError(d, ATLAS_JSON, "is not listed with its SHA-256 in the model card"
                              if ATLAS_JSON not in hashes else "does not match its SHA-256 in "
                              "the model card (corrupt or replaced file)")
        arrays = {}
        for name, filename in card["files"].items():
            where = f"{ATLAS_JSON} files.{name} ({filename})"
            path = confined(d, filename, where)
            if hashes is not None:
                check_sha256(path, d, where, hashes.get(PurePosixPath(filename).as_posix()),
                             MAX_ATLAS_FILE_BYTES)
            arrays[name] = _read_array(path, d, where, _SHAPES[name])
        meta = {k: v for k, v in card.items() if k not in ("format", "level", "files")}
        return cls(level=card["level"], meta=meta, **arrays)


def read_atlas_card(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """An atlas folder's ``atlas.json``, checked, and its SHA-256.

    The folder is untrusted (it may come inside a model bundle): the card must be a small
    regular file of JSON with a known format, a plain level name and the four image names,
    each a relative path that stays inside the folder.
    """
    d = Path(directory)
    if not os.path.lexists(d / ATLAS_JSON):
        raise InputError(d, f"not an atlas folder (no {ATLAS_JSON})")
    raw = read_regular(confined(d, ATLAS_JSON, ATLAS_JSON), d, ATLAS_JSON, MAX_ATLAS_JSON_BYTES)
    card = parse_json(raw, d, ATLAS_JSON)
    if not isinstance(card, dict):
        raise BundleError(d, ATLAS_JSON, "must be a JSON object")
    fmt = card.get("format", ATLAS_FORMAT)
    if isinstance(fmt, bool) or fmt != ATLAS_FORMAT:
        raise BundleError(d, f"{ATLAS_JSON} format", f"must be {ATLAS_FORMAT}, got {fmt!r}")
    level = card.get("level")
    if not isinstance(level, str) or not _LEVEL.fullmatch(level):
        raise BundleError(d, f"{ATLAS_JSON} level", f"must be a level name such as 'L4-L5', "
                                                    f"got {str(level)[:80]!r}")
    files = card.setdefault("files", dict(_FILES))
    if not isinstance(files, dict) or set(files) != set(_FILES):
        raise BundleError(d, f"{ATLAS_JSON} files", f"must name exactly the images "
                                                    f"{sorted(_FILES)}")
    for name, filename in files.items():
        confined(d, filename, f"{ATLAS_JSON} files.{name}")
    return card, hashlib.sha256(raw).hexdigest()


def _read_array(path: Path, root: Path, where: str, shape: tuple[int, ...]) -> np.ndarray:
    """An atlas image as float32: a regular file, its header's size checked before any
    pixel is read, its values finite."""
    regular_size(path, root, where, MAX_ATLAS_FILE_BYTES)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        found = tuple(reversed(reader.GetSize()))
        if found != shape or reader.GetNumberOfComponents() != 1:
            raise BundleError(root, where, f"has shape {found}, expected {shape}")
        array = sitk.GetArrayFromImage(reader.Execute()).astype(np.float32)
    except RuntimeError as err:
        problem = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise BundleError(root, where, f"is not a readable image ({problem[:200]})") from None
    if array.shape != shape or not np.isfinite(array).all():
        raise BundleError(root, where, "holds non-finite values or the wrong shape")
    return array


def _atlas_folders(root: Path) -> list[Path]:
    """The sub-folders of ``root`` holding an ``atlas.json``, each confined to ``root``."""
    if not root.is_dir():
        raise InputError(root, "no atlas found (not a folder)")
    subs = [sub for sub in sorted(root.iterdir()) if os.path.lexists(sub / ATLAS_JSON)]
    for sub in subs:
        confined(root, sub.name, sub.name)
    return subs


def atlas_files(directory: str | os.PathLike[str]) -> list[str]:
    """Every file :func:`load_atlases` reads from ``directory``, relative to it (checked as
    :func:`read_atlas_card` does): what a model card must hash."""
    names = []
    for sub in _atlas_folders(Path(directory)):
        card, _ = read_atlas_card(sub)
        names += [f"{sub.name}/{ATLAS_JSON}"] + [
            f"{sub.name}/{PurePosixPath(f).as_posix()}" for f in card["files"].values()]
    return names


def load_atlases(directory: str | os.PathLike[str],
                 hashes: Mapping[str, str] | None = None) -> dict[str, Atlas]:
    """All atlases in the sub-folders of ``directory``, by level.

    ``hashes`` (path relative to ``directory`` → SHA-256): when given, every file read must
    be listed and match (see :meth:`Atlas.load`).
    """
    atlases: dict[str, Atlas] = {}
    for sub in _atlas_folders(Path(directory)):
        prefix = f"{sub.name}/"
        mine = None if hashes is None else {k[len(prefix):]: v for k, v in hashes.items()
                                             if k.startswith(prefix)}
        atlas = Atlas.load(sub, mine)
        if atlas.level in atlases:
            raise InputError(sub, f"a second atlas of level {atlas.level!r}")
        atlases[atlas.level] = atlas
    if not atlases:
        raise InputError(directory, "no atlas found (expected sub-folders with atlas.json)")
    return atlases
