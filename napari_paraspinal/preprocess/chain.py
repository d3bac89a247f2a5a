"""The whole preprocessing of one slice: body mask → N4 → normalise → register → atlas space.

:func:`preprocess_slice` returns everything a later step needs to undo or redo any part
(the native slice, the bias field, the normalised slice, the registration with its mapping
and quality) and the atlas-space image the network sees. :func:`write_preprocessed` writes
what ``paraspinal preprocess`` promises: the atlas-space image, the bias field on the native
grid, the transform (ITK ``.tfm`` plus the JSON mapping), a QC picture and a QC JSON.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

from ..core.atomic import atomic_path, write_text_atomic
from ..core.config import config_from_dict
from ..core.errors import InputError
from ..core.geometry import SliceImage
from ..core.io import validate_slice
from ..core.labels import BY_VALUE, NUM_CLASSES
from ..core.writers import write_image
from .atlas import Atlas, load_atlases
from .atlas_build import AtlasCase
from .atlas_space import atlas_reference, to_atlas
from .bodymask import body_mask
from .frame import body_frame
from .n4 import N4Config, n4_correct
from .normalize import NormalizeConfig, normalize
from .registration import detect_level, register
from .registration_config import RegistrationConfig
from .registration_qc import RegistrationResult

AUTO = "auto"
#: Unknown level: the body frame does not detect levels.
UNKNOWN = "unknown"
#: How a slice reaches the network: ``"body"`` (:mod:`.frame`, registration-free) or
#: ``"atlas"`` (registration to a level atlas, the paper's way).
BODY, ATLAS = "body", "atlas"
FRAMES = (BODY, ATLAS)


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the chain; a model card stores them (:func:`.config_to_dict`) so inference
    repeats training. Cards without a frame were made in the atlas frame (the default)."""

    n4: N4Config | None = field(default_factory=N4Config)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    frame: str = ATLAS

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"frame must be one of {FRAMES}, got {self.frame!r}")


#: What a model card's ``preprocessing`` holds beside the chain's settings: where its atlases
#: are, a description of the network's space, and the clean-up after the network.
CARD_ONLY = ("atlases", "space", "postprocess")


def preprocess_from_card(preprocessing: dict) -> PreprocessConfig:
    """The chain's settings stored in a model card's ``preprocessing`` entry."""
    return config_from_dict(PreprocessConfig,
                            {k: v for k, v in preprocessing.items() if k not in CARD_ONLY})



@dataclass
class Preprocessed:
    """A slice on its way to the network, with every step's result."""

    native: SliceImage
    mask: np.ndarray
    bias: np.ndarray | None
    normalized: SliceImage
    registration: RegistrationResult
    atlas_image: np.ndarray
    level_scores: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def level(self) -> str:
        return self.registration.level

    def qc(self) -> dict:
        """Quality and provenance as a JSON-friendly dict."""
        return {"source": self.native.source, **self.registration.qc(),
                "level_scores": self.level_scores, "seconds": self.seconds,
                "mapping": self.registration.mapping.to_dict()}


def default_atlases() -> dict[str, Atlas]:
    """The atlases shipped in ``models/atlases``."""
    from ..models import MODELS_DIR

    return load_atlases(MODELS_DIR / "atlases")


def preprocess_slice(image: SliceImage, atlases: dict[str, Atlas], level: str = AUTO,
                     config: PreprocessConfig | None = None) -> Preprocessed:
    """Run the chain on one slice; ``level`` is a key of ``atlases`` or ``"auto"``.

    Raises :class:`InputError` for a slice the chain cannot use (no body, constant image);
    a poor registration is not an error but a QC flag on the result.
    """
    config = config or PreprocessConfig()
    if config.frame == ATLAS and level == UNKNOWN:
        level = AUTO  # a level the body frame could not know: the atlases detect one
    if config.frame == ATLAS and level != AUTO and level not in atlases:
        raise ValueError(f"no atlas for level {level!r}; have {sorted(atlases)}")
    validate_slice(image)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    mask = body_mask(image)
    seconds["mask"] = time.perf_counter() - t
    t = time.perf_counter()
    bias = None
    corrected = image
    if config.n4 is not None:
        result = n4_correct(image, mask, config.n4)
        corrected, bias = result.corrected, result.bias
    seconds["n4"] = time.perf_counter() - t
    t = time.perf_counter()
    normalized = normalize(corrected, mask, config.normalize)
    seconds["normalize"] = time.perf_counter() - t
    t = time.perf_counter()
    scores: dict[str, float] = {}
    if config.frame == BODY:
        reg = frame_result(normalized, mask, UNKNOWN if level == AUTO else level)
    elif level == AUTO:
        reg, results = detect_level(normalized, mask, atlases, config.registration)
        scores = {k: r.correlation for k, r in results.items()}
    else:
        reg = register(normalized, mask, atlases[level], config.registration)
    seconds["register"] = time.perf_counter() - t
    t = time.perf_counter()
    atlas_image = to_atlas(normalized, reg.mapping)
    seconds["resample"] = time.perf_counter() - t
    seconds["total"] = sum(seconds.values())
    return Preprocessed(image, mask, bias, normalized, reg, atlas_image, scores, seconds)


def frame_result(image: SliceImage, mask: np.ndarray, level: str) -> RegistrationResult:
    """The body frame as a registration result (no fit, so no fit quality to report; the
    segmentation's own QC flags the slice later)."""
    t = time.perf_counter()
    mapping = body_frame(image, mask)
    nan = float("nan")
    return RegistrationResult(mapping, level, nan, nan, nan, False, [],
                              time.perf_counter() - t)


def qc_picture(pre: Preprocessed, atlas: Atlas) -> np.ndarray:
    """RGB picture: the registered slice in atlas space with the atlas's label contours.

    The left half shows the slice, the right half the atlas template, both with the same
    contours, so a reader sees at a glance whether the anatomy lines up.
    """
    def grey(a: np.ndarray) -> np.ndarray:
        hi = float(np.percentile(a, 99.5)) or 1.0
        g = np.clip(a / hi, 0, 1)
        return np.repeat((g * 255).astype(np.uint8)[..., None], 3, -1)

    labels = np.where(atlas.probabilities[1:].max(0) > 0.5,
                      atlas.probabilities.argmax(0), 0)
    panels = []
    for base in (pre.atlas_image, atlas.image):
        rgb = grey(base)
        for value in range(1, NUM_CLASSES):
            region = labels == value
            edge = region & ~ndi.binary_erosion(region)
            rgb[edge] = np.array(BY_VALUE[value].rgba[:3]) * 255
        panels.append(rgb)
    picture = np.concatenate([panels[0], np.zeros((panels[0].shape[0], 4, 3), np.uint8),
                              panels[1]], 1)
    img = Image.fromarray(picture)
    img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    r = pre.registration
    text = (f"{pre.level}  corr {r.correlation:.2f}  body Dice {r.body_dice:.2f}"
            + ("  CHECK: " + "; ".join(r.reasons) if r.flagged else "  ok"))
    draw.rectangle((0, 0, img.width, 14), fill=(0, 0, 0))
    draw.text((4, 1), text, fill=(255, 80, 80) if r.flagged else (120, 255, 120))
    return np.asarray(img)


def write_preprocessed(pre: Preprocessed, atlas: Atlas, out_dir: str | os.PathLike[str],
                       stem: str) -> dict[str, Path]:
    """Write the atlas image, bias field, transform, QC picture and QC JSON of one slice."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    img = sitk.GetImageFromArray(pre.atlas_image.astype(np.float32))
    img.CopyInformation(atlas_reference())
    paths["atlas_image"] = out / f"{stem}_atlas.nii.gz"
    with atomic_path(paths["atlas_image"]) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    if pre.bias is not None:
        paths["bias"] = write_image(pre.native.with_data(pre.bias.astype(np.float32)),
                                    out / f"{stem}_bias.nii.gz")
    paths["transform"] = out / f"{stem}_atlas_to_plane.tfm"
    with atomic_path(paths["transform"]) as tmp:
        sitk.WriteTransform(pre.registration.mapping.transform, str(tmp))
    paths["qc_png"] = out / f"{stem}_qc.png"
    with atomic_path(paths["qc_png"]) as tmp:
        Image.fromarray(qc_picture(pre, atlas)).save(tmp, format="PNG")
    paths["qc_json"] = out / f"{stem}_qc.json"
    write_text_atomic(paths["qc_json"], json.dumps(pre.qc(), indent=2))
    return paths


def atlas_cases_from_folder(data_dir: str | os.PathLike[str], level: str | None = None,
                            config: PreprocessConfig | None = None
                            ) -> dict[str, list[AtlasCase]]:
    """Labelled slices of a dataset folder (``images/``, ``labels/``), prepared for an atlas.

    The level of a case comes from ``truth/<case>.json`` (phantoms) or from ``level``. Each
    image gets the chain's body mask, N4 and normalisation, so the atlas is built from the
    same intensities a new slice will have.
    """
    from ..core.io import image_stem, labelled_pairs, read_labels, read_slice

    config = config or PreprocessConfig()
    root = Path(data_dir)
    groups: dict[str, list[AtlasCase]] = {}
    for ref, label_path in labelled_pairs(root):
        stem = image_stem(ref.path)
        image = read_slice(ref)
        labels = read_labels(label_path, image.geometry)
        case_level = level
        truth = root / "truth" / f"{stem}.json"
        if case_level is None and truth.is_file():
            case_level = json.loads(truth.read_text()).get("level")
        if case_level is None:
            raise InputError(ref.path, "level unknown: give --level or a truth/<case>.json")
        mask = body_mask(image)
        corrected = n4_correct(image, mask, config.n4).corrected if config.n4 else image
        groups.setdefault(case_level, []).append(
            AtlasCase(normalize(corrected, mask, config.normalize), mask, labels))
    return groups
