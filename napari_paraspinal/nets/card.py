"""The model card's schema: types and bounds for every field that loading a model reads.

A bundle may come from anyone, so its card is untrusted input. Every field the product
reads has a type and a range that keeps a run bounded in time and memory (a CRF iteration
count of 1e9 would hang it; a grid cell of 1e-6 pixel would exhaust memory); unknown and
missing fields are refused, so a typo or a card from another format never loads half-read.
Every problem is a :class:`.BundleError` naming the folder, the field and the problem.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath
from typing import Any

import torch

from .. import __version__
from ..core.bundlefiles import BundleError, confined, is_sha256
from ..core.config import config_from_dict
from ..core.labels import LABELS, NUM_CLASSES
from ..postprocess import CHOICES
from ..preprocess.chain import FRAMES, preprocess_from_card
from ..preprocess.normalize import METHODS
from .crf import CRFConfig
from .segmenter import INPUTS, SegmenterConfig
from .unet import NORMS, UNetConfig

CARD_FORMAT = 1
#: Files a card may list with their hashes (besides the weights, hashed on their own).
MAX_LISTED_FILES = 10_000


@dataclass(frozen=True)
class Num:
    """A finite number in ``[lo, hi]`` (an integer when ``integer``; None when ``none_ok``)."""

    lo: float
    hi: float
    integer: bool = False
    none_ok: bool = False


@dataclass(frozen=True)
class Choice:
    """One of ``values``."""

    values: tuple


@dataclass(frozen=True)
class Text:
    """A string of at most ``max_len`` characters (no control characters when ``plain``)."""

    max_len: int = 200
    plain: bool = False
    none_ok: bool = False


@dataclass(frozen=True)
class Maybe:
    """None, or a value that fits ``spec``."""

    spec: Any


@dataclass(frozen=True)
class Seq:
    """A JSON list of ``min_len`` to ``max_len`` items, each checked against ``item``."""

    item: Any
    max_len: int
    min_len: int = 1


FLAG = Choice((True, False))
ANY_DICT = Choice(())  # any JSON object (free-form: training history, metrics, notes)

UNET = {"in_channels": Num(1, 1, True), "num_classes": Num(NUM_CLASSES, NUM_CLASSES, True),
        "base_width": Num(1, 128, True), "norm": Choice(NORMS), "dropout": Num(0.0, 0.99)}
CRF = {"iterations": Num(1, 50, True), "theta_alpha": Num(1.0, 256.0),
       "theta_beta": Num(0.01, 10.0), "theta_gamma": Num(0.1, 64.0),
       "spatial_weight": Num(-1e3, 1e3), "bilateral_weight": Num(-1e3, 1e3),
       "grid_spatial_cell": Num(0.1, 2.0), "grid_range_cell": Num(0.1, 2.0),
       "truncate": Num(1.0, 8.0), "normalize": FLAG}
NETWORK = {"unet": UNET, "crf": CRF, "use_crf": FLAG, "input": Choice(INPUTS)}
N4 = {"shrink": Num(1, 16, True), "fit_pixel_mm": Num(0.0, 32.0),
      "iterations": Seq(Num(1, 1000, True), 6), "convergence_threshold": Num(0.0, 1.0),
      "control_points": Num(2, 64, True), "spline_order": Num(1, 5, True),
      "bias_fwhm": Num(1e-3, 5.0), "wiener_noise": Num(0.0, 1.0),
      "histogram_bins": Num(2, 4096, True)}
NORMALIZE = {"method": Choice(METHODS), "low_percentile": Num(0.0, 100.0),
             "high_percentile": Num(0.0, 100.0), "low_value": Num(-1e6, 1e6),
             "high_value": Num(-1e6, 1e6), "clip_low": Num(-1e6, 1e6, none_ok=True),
             "clip_high": Num(-1e6, 1e6, none_ok=True)}
_SHRINK, _SMOOTH = Seq(Num(1, 64, True), 8), Seq(Num(0.0, 100.0), 8)
# kept for provenance: inference registers with this version's settings, not the card's
REGISTRATION = {
    "histogram_bins": Num(2, 1024, True), "sampling": Num(1e-3, 1.0), "shrink": _SHRINK,
    "smoothing_mm": _SMOOTH, "iterations": Num(1, 10_000, True), "convergence": Num(0.0, 1.0),
    "convergence_window": Num(1, 1000, True),
    "stages": Seq(Choice(("similarity", "affine")), 4, 0), "itk_spacing_mm": Num(0.1, 32.0),
    "refine": FLAG, "refine_shrink": _SHRINK, "refine_smoothing_mm": _SMOOTH,
    "refine_margin_mm": Num(0.0, 500.0), "refine_metric": Choice(("ncc", "correlation",
                                                                  "mattes")),
    "refine_max_rescale": Num(1.0, 10.0), "rotation_starts_deg": Seq(Num(-180.0, 180.0), 64),
    "full_starts": Num(0, 64, True), "refine_only_fallback": FLAG,
    "min_body_dice": Num(0.0, 1.0), "min_correlation": Num(-1.0, 1.0),
    "min_structure_correlation": Num(-1.0, 1.0), "structure_margin_mm": Num(0.0, 500.0),
    "seed": Num(0, 2**32 - 1, True)}
PREPROCESSING = {"n4": Maybe(N4), "normalize": NORMALIZE, "registration": REGISTRATION,
                 "frame": Choice(FRAMES), "atlases": Choice(("atlases/", "atlases")),
                 "space": Text(500), "postprocess": Choice(CHOICES)}
LABEL = {"value": Num(1, 255, True), "short": Text(16, plain=True),
         "name": Text(200, plain=True)}
CARD = {"name": Text(100, plain=True), "version": Text(32, plain=True), "network": NETWORK,
        "preprocessing": PREPROCESSING, "training": ANY_DICT, "data": ANY_DICT,
        "metrics": ANY_DICT, "parent": Text(200, plain=True, none_ok=True),
        "labels": Seq(LABEL, 255, 0), "software": ANY_DICT, "created": Text(64, plain=True),
        "weights_sha256": Text(64), "files_sha256": ANY_DICT, "format": Num(1, CARD_FORMAT, True)}
#: Fields of the free-form parts that other code reads.
READ_IN_FREE_FORM = {"training": {"multi_data": FLAG},
                     "data": {"generator": Text(10_000), "train_sources": Seq(Text(1000),
                                                                                100_000, 0)}}
#: Card sections that must be there (a card written by :func:`.save_bundle` has them all).
REQUIRED = frozenset(CARD)


def _fail(folder: Any, where: str, problem: str) -> BundleError:
    return BundleError(folder, f"card.json {where}".rstrip(), problem)


def _check(value: Any, spec: Any, where: str, folder: Any) -> None:
    """Refuse ``value`` unless it fits ``spec`` (a dict spec is a JSON object's fields)."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _fail(folder, where, f"must be a JSON object, got {type(value).__name__}")
        unknown = sorted(set(value) - set(spec))
        if unknown:
            raise _fail(folder, where, f"unknown field(s) {unknown}")
        for key, sub in spec.items():
            if key in value:
                _check(value[key], sub, f"{where}.{key}" if where else key, folder)
    elif isinstance(spec, Maybe):
        if value is not None:
            _check(value, spec.spec, where, folder)
    elif spec is ANY_DICT:
        if not isinstance(value, dict):
            raise _fail(folder, where, f"must be a JSON object, got {type(value).__name__}")
    elif isinstance(spec, Num):
        if value is None and spec.none_ok:
            return
        kind = "an integer" if spec.integer else "a number"
        ok_type = isinstance(value, int) if spec.integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            raise _fail(folder, where, f"must be {kind}, got {value!r}")
        if not spec.lo <= value <= spec.hi:  # NaN and infinities fail here too
            raise _fail(folder, where, f"must be {kind} from {spec.lo:g} to {spec.hi:g}, "
                                       f"got {value!r}")
    elif isinstance(spec, Choice):
        if isinstance(value, bool) != (spec is FLAG) or value not in spec.values:
            raise _fail(folder, where, f"must be one of {list(spec.values)}, got {value!r}")
    elif isinstance(spec, Text):
        if value is None and spec.none_ok:
            return
        if not isinstance(value, str) or len(value) > spec.max_len:
            raise _fail(folder, where, f"must be a string of at most {spec.max_len} "
                                       f"characters, got {str(value)[:80]!r}")
        if spec.plain and any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise _fail(folder, where, "must not hold control characters")
    elif isinstance(spec, Seq):
        if not isinstance(value, list) or not spec.min_len <= len(value) <= spec.max_len:
            raise _fail(folder, where, f"must be a list of {spec.min_len} to {spec.max_len} "
                                       f"items, got {str(value)[:80]!r}")
        for i, item in enumerate(value):
            _check(item, spec.item, f"{where}[{i}]", folder)
    else:  # pragma: no cover - a mistake in the tables above
        raise TypeError(f"unknown spec {spec!r}")


def _cross_checks(card: dict[str, Any], folder: Any) -> None:
    """What needs more than one field: the configs' own checks, the CRF's grid size."""
    network, pre = card["network"], card["preprocessing"]
    try:
        config = config_from_dict(SegmenterConfig, network)
        config_from_dict(UNetConfig, config.unet)
        crf = CRFConfig(**config.crf)
    except (TypeError, ValueError) as err:
        raise _fail(folder, "network", str(err)) from None
    try:
        preprocess = preprocess_from_card(pre)
    except (TypeError, ValueError) as err:
        raise _fail(folder, "preprocessing", str(err)) from None
    if preprocess.n4 is not None:
        n4 = preprocess.n4
        if n4.control_points * 2 ** (len(n4.iterations) - 1) > 128:
            raise _fail(folder, "preprocessing.n4", "control_points doubled per fitting level "
                                                    "must stay at most 128 per axis")
    if crf.grid_spatial_cell * crf.theta_alpha < 2.0:
        raise _fail(folder, "network.crf", "grid_spatial_cell * theta_alpha must be at least "
                                           "2 pixels (a finer grid does not fit in memory)")
    if crf.grid_range_cell * crf.theta_beta < 0.02:
        raise _fail(folder, "network.crf", "grid_range_cell * theta_beta must be at least 0.02")
    norm = preprocess.normalize
    if config.use_crf and (norm.clip_low is None or norm.clip_high is None
                           or norm.clip_high - norm.clip_low > 10.0):
        raise _fail(folder, "preprocessing.normalize", "the CRF needs intensities clipped to "
                                                       "a range of at most 10 (clip_low, "
                                                       "clip_high)")


def validate_card(card: Any, folder: Any) -> dict[str, Any]:
    """``card`` (parsed JSON) checked against the schema; BundleError naming the field."""
    if not isinstance(card, dict):
        raise _fail(folder, "", f"must be a JSON object, got {type(card).__name__}")
    missing = sorted(REQUIRED - set(card))
    if missing:
        raise _fail(folder, str(missing[0]), "is missing (a card lists every field; the "
                                             "hashes are required)")
    _check(card, CARD, "", folder)
    for section, spec in READ_IN_FREE_FORM.items():
        _check({k: v for k, v in card[section].items() if k in spec}, spec, section, folder)
    if not is_sha256(card["weights_sha256"]):
        raise _fail(folder, "weights_sha256", f"must be the weights' SHA-256 (64 lowercase "
                                              f"hex digits), got {card['weights_sha256']!r}")
    files = card["files_sha256"]
    if len(files) > MAX_LISTED_FILES:
        raise _fail(folder, "files_sha256", f"lists more than {MAX_LISTED_FILES} files")
    for name, digest in files.items():
        confined(folder, name, f"card.json files_sha256[{name!r}]")
        if PurePosixPath(name).as_posix() != name:
            raise _fail(folder, f"files_sha256[{name!r}]", "must be a plain relative path "
                                                           "('a/b.nii.gz')")
        if name in ("card.json", "weights.safetensors"):
            raise _fail(folder, f"files_sha256[{name!r}]", "must name a file other than the "
                                                           "card and the weights")
        if not is_sha256(digest):
            raise _fail(folder, f"files_sha256[{name!r}]", f"must be a SHA-256 (64 lowercase "
                                                           f"hex digits), got {digest!r}")
    _cross_checks(card, folder)
    return card


@dataclass(frozen=True)
class ModelCard:
    """What a model is, how it was made, how well it does, and the hashes of its files.

    ``files_sha256`` maps every file of the bundle but the card and the weights (atlases,
    training log) to its SHA-256, by path relative to the bundle. Frozen: a loaded card is
    what was checked.
    """

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
    files_sha256: dict[str, str] = field(default_factory=dict)
    format: int = CARD_FORMAT

    def to_json(self) -> str:
        """The card as written to ``card.json``."""
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Any, folder: Any = "<card>") -> ModelCard:
        """A checked card (:func:`validate_card`); ``folder`` is named in errors and
        confines the file names of ``files_sha256``."""
        checked = validate_card(d, folder)
        return cls(**{f.name: checked[f.name] for f in fields(cls)})
