"""BIDS names for ``paraspinal run --bids`` (:mod:`.bids`): the entities a raw file's name
carries, labels made from case ids, and where a case's files go in the dataset."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

#: Entities of a raw anatomical image that its segmentation keeps (BIDS order).
KEEP = ("task", "acq", "ce", "rec", "run", "echo", "part", "chunk")


_LABEL = "[0-9a-zA-Z]+"
_RAW_NAME = re.compile(rf"^sub-(?P<sub>{_LABEL})(?P<rest>(?:_[a-z]+-{_LABEL})*)"
                       rf"_(?P<suffix>{_LABEL})\.nii(?:\.gz)?$")


@dataclass(frozen=True)
class BidsSource:
    """What a BIDS raw file's path says: its entities (``sub`` and ``ses`` included, in file
    name order), suffix and, where the folders agree, the raw dataset's folder."""

    path: Path
    entities: dict[str, str]
    suffix: str
    root: Path | None = None

    @property
    def relpath(self) -> str:
        """The path inside the raw dataset (``sub-01/anat/sub-01_T2w.nii.gz``)."""
        return self.path.relative_to(self.root).as_posix() if self.root else self.path.name


def parse_source(path: str | os.PathLike[str]) -> BidsSource | None:
    """The BIDS entities of a raw NIfTI file named ``sub-<label>[_<key>-<value>...]_<suffix>``,
    or None for any other name; the dataset folder when it lies in
    ``sub-<label>/[ses-<label>/]<datatype>/``."""
    path = Path(os.path.abspath(path))
    m = _RAW_NAME.match(path.name)
    if m is None:
        return None
    entities = {"sub": m["sub"]}
    for part in filter(None, m["rest"].split("_")):
        key, value = part.split("-", 1)
        if key in entities:  # an entity twice: not a BIDS name
            return None
        entities[key] = value
    up, agree = path.parent, re.fullmatch("[a-z]+", path.parent.name) is not None
    for key in ("ses", "sub") if "ses" in entities else ("sub",):
        up = up.parent
        agree = agree and up.name == f"{key}-{entities[key]}"
    return BidsSource(path, entities, m["suffix"], up.parent if agree else None)


def bids_label(text: str, fallback: str = "case") -> str:
    """``text`` as a BIDS label: its ASCII letters and digits (``fallback`` when none)."""
    return re.sub(r"[^0-9A-Za-z]", "", text) or fallback


@dataclass(frozen=True)
class CaseFiles:
    """A case's files in the BIDS dataset and the BIDS URIs of its source images."""

    folder: Path
    stem: str
    sources: tuple[str, ...]

    def path(self, suffix: str) -> Path:
        return self.folder / f"{self.stem}_{suffix}"

    @property
    def all(self) -> list[Path]:
        return [self.path(s) for s in ("dseg.nii.gz", "dseg.json", "morph.tsv", "morph.json")]
