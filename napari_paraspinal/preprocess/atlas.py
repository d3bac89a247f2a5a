"""Atlases of a spinal level, built from labelled slices by group-wise affine averaging.

An atlas holds, in atlas space (origin at the centre of the labelled structures, x toward
the patient's left, y posterior, mm):

* ``image``: the mean normalised slice on the network grid (256×256 at 1 mm);
* ``probabilities``: per-label probability maps on the same grid (C×256×256);
* ``wide_image`` and ``wide_body``: the mean slice and the body probability on a wide grid
  (256×256 at 2 mm, 512 mm field of view) that holds the whole body outline, for
  registration and its moment initialisation (most bodies are wider than 256 mm).

Building: every case starts with its labelled structures' centroid at the origin; the
template is the mean of the cases; each round registers every case to the template
(affine), removes the mean transform (so the atlas has the population's average shape and
position, not the first case's) and averages again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from ..core.atomic import atomic_path, write_text_atomic
from ..core.bundlefiles import BundleError, check_sha256, confined, read_regular, regular_size
from ..core.errors import InputError
from ..core.geometry import SliceImage
from ..core.labels import NUM_CLASSES
from ..core.orientation import canonical_reorientation, reorient_geometry
from .atlas_space import (
    ATLAS_SIZE,
    AtlasMapping,
    as_affine,
    atlas_reference,
    compose,
    one_hot,
    plane_image,
)

if TYPE_CHECKING:
    from .registration import RegistrationConfig

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
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise BundleError(d, ATLAS_JSON, f"is not valid JSON ({err})") from None
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


@dataclass
class AtlasCase:
    """One training slice for an atlas: normalised image, body mask and label map."""

    image: SliceImage
    mask: np.ndarray
    labels: np.ndarray


def _label_centroid_mapping(case: AtlasCase) -> AtlasMapping:
    """Translation that puts the centroid of the labelled structures at the atlas origin."""
    r = canonical_reorientation(case.image.geometry)
    g = reorient_geometry(case.image.geometry, r)
    lab = r.apply(np.asarray(case.labels) > 0)
    if not lab.any():
        lab = r.apply(np.asarray(case.mask, bool))
    rows, cols = np.nonzero(lab)
    t = sitk.AffineTransform(2)
    t.SetTranslation((float(cols.mean() * g.spacing[0]), float(rows.mean() * g.spacing[1])))
    return AtlasMapping(case.image.geometry, r, t)


def _resample(plane: sitk.Image, ref: sitk.Image, transform: sitk.Transform,
              nearest: bool = False) -> np.ndarray:
    interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    out = sitk.Resample(plane, ref, transform, interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _plane_of(array: np.ndarray, mapping: AtlasMapping) -> sitk.Image:
    img = sitk.GetImageFromArray(mapping.reorientation.apply(np.asarray(array, np.float32)))
    img.CopyInformation(mapping.plane_reference())
    return img


def _mean_affine(transforms: list[sitk.Transform]) -> sitk.AffineTransform:
    """The mean of affine transforms expressed about the origin."""
    affines = [as_affine(t) for t in transforms]
    mean = sitk.AffineTransform(2)
    mean.SetMatrix(tuple(np.mean([a.GetMatrix() for a in affines], 0)))
    mean.SetTranslation(tuple(np.mean([a.GetTranslation() for a in affines], 0)))
    return mean


def _average(cases: list[AtlasCase], planes: list[sitk.Image], mappings: list[AtlasMapping],
             level: str) -> Atlas:
    """The atlas that the cases make under the current mappings."""
    wide, ref = wide_reference(), atlas_reference()
    pairs = list(zip(cases, planes, mappings, strict=True))
    wide_image = np.mean([_resample(p, wide, m.transform) for _, p, m in pairs], 0)
    wide_body = np.mean([_resample(_plane_of(c.mask, m), wide, m.transform)
                         for c, _, m in pairs], 0)
    image = np.mean([_resample(p, ref, m.transform) for _, p, m in pairs], 0)
    probabilities = np.zeros((NUM_CLASSES, ATLAS_SIZE, ATLAS_SIZE), np.float32)
    for case, _, m in pairs:
        hot = one_hot(np.asarray(case.labels, np.uint8), NUM_CLASSES)
        for c in range(1, NUM_CLASSES):
            probabilities[c] += _resample(_plane_of(hot[c], m), ref, m.transform)
    probabilities /= len(cases)
    probabilities[0] = np.clip(1.0 - probabilities[1:].sum(0), 0.0, 1.0)
    return Atlas(level, image.astype(np.float32), probabilities,
                 wide_image.astype(np.float32), wide_body.astype(np.float32))


def build_atlas(cases: list[AtlasCase], level: str, rounds: int = 3,
                config: RegistrationConfig | None = None,
                progress: Callable[[int, int], None] | None = None) -> Atlas:
    """Group-wise affine atlas of ``cases`` (all of one level); see the module docstring."""
    from .. import __version__
    from .registration import RegistrationConfig, register

    if len(cases) < 2:
        raise ValueError(f"an atlas needs at least 2 cases, got {len(cases)}")
    config = config or RegistrationConfig(rotation_starts_deg=(0.0,))
    mappings = [_label_centroid_mapping(c) for c in cases]
    planes = [plane_image(c.image, m.reorientation)
              for c, m in zip(cases, mappings, strict=True)]
    current = _average(cases, planes, mappings, level)
    for round_ in range(rounds):
        new = []
        for i, case in enumerate(cases):
            new.append(register(case.image, case.mask, current, config).mapping.transform)
            if progress is not None:
                progress(round_ * len(cases) + i + 1, rounds * len(cases))
        inverse_mean = _mean_affine(new).GetInverse()
        mappings = [AtlasMapping(m.native, m.reorientation, compose(t, inverse_mean))
                    for m, t in zip(mappings, new, strict=True)]
        # keep the labelled structures centred at the origin
        wide = wide_reference()
        share = np.mean([_resample(_plane_of(c.labels > 0, m), wide, m.transform)
                         for c, m in zip(cases, mappings, strict=True)], 0)
        rows, cols = np.nonzero(share > 0.5)
        shift = sitk.TranslationTransform(2, (
            float(wide.GetOrigin()[0] + cols.mean() * WIDE_SPACING),
            float(wide.GetOrigin()[1] + rows.mean() * WIDE_SPACING)))
        mappings = [AtlasMapping(m.native, m.reorientation, compose(m.transform, shift))
                    for m in mappings]
        current = _average(cases, planes, mappings, level)
    # what a rebuild must repeat: registration settings and the software that ran them
    current.meta = {"cases": len(cases), "rounds": rounds,
                    "registration": config.to_dict(),
                    "software": {"napari-paraspinal": __version__,
                                 "SimpleITK": sitk.Version.VersionString()},
                    "sources": [c.image.source for c in cases]}
    return current
