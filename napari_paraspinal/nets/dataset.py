"""Training samples in atlas space: each slice through the same chain inference uses.

A sample is the atlas-space image (256×256 at 1 mm, normalised) and the label map sent to
atlas space with nearest neighbour, plus which classes the source annotates (real data may
label only some muscles). Arrays are cached as ``.npz`` without pickled objects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.geometry import SliceImage
from ..core.labels import NUM_CLASSES
from ..phantom import LEVELS, PhantomConfig, generate_phantom
from ..preprocess.atlas import Atlas
from ..preprocess.atlas_space import labels_to_atlas
from ..preprocess.chain import PreprocessConfig, preprocess_slice


@dataclass
class AtlasSamples:
    """N atlas-space samples: images N×256×256 float32, labels N×256×256 uint8, the
    annotated classes N×C bool, and where each came from."""

    images: np.ndarray
    labels: np.ndarray
    label_mask: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray | list[int]) -> AtlasSamples:
        idx = np.asarray(index, int)
        return AtlasSamples(self.images[idx], self.labels[idx], self.label_mask[idx],
                            [self.sources[i] for i in idx])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write as a compressed ``.npz`` (plain arrays; sources as JSON text)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, images=self.images, labels=self.labels,
                            label_mask=self.label_mask,
                            sources=np.array(json.dumps(self.sources)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AtlasSamples:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["images"], z["labels"], z["label_mask"],
                       json.loads(str(z["sources"])))

    @classmethod
    def concatenate(cls, parts: list[AtlasSamples]) -> AtlasSamples:
        return cls(np.concatenate([p.images for p in parts]),
                   np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.label_mask for p in parts]),
                   [s for p in parts for s in p.sources])


def atlas_sample(image: SliceImage, labels: np.ndarray, atlases: dict[str, Atlas], level: str,
                 config: PreprocessConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One slice and its labels in atlas space, through the inference chain."""
    pre = preprocess_slice(image, atlases, level, config)
    return pre.atlas_image, labels_to_atlas(labels, pre.registration.mapping)


def phantom_samples(n: int, seed: int, atlases: dict[str, Atlas], contrast: str = "T2w",
                    config: PreprocessConfig | None = None,
                    progress: Callable[[int, int], None] | None = None) -> AtlasSamples:
    """``n`` phantoms (levels alternating, seeds ``seed + k``), fully labelled."""
    images, labels, sources = [], [], []
    for k in range(n):
        level = LEVELS[k % 2]
        case = generate_phantom(seed + k, PhantomConfig(level=level, contrast=contrast))
        img, lab = atlas_sample(case.image, case.labels, atlases, level, config)
        images.append(img)
        labels.append(lab)
        sources.append(case.image.source)
        if progress is not None:
            progress(k + 1, n)
    mask = np.ones((n, NUM_CLASSES), bool)
    return AtlasSamples(np.stack(images), np.stack(labels), mask, sources)


def folder_samples(data_dir: str | os.PathLike[str], atlases: dict[str, Atlas],
                   level: str = "auto", annotated: list[int] | None = None,
                   config: PreprocessConfig | None = None) -> AtlasSamples:
    """Labelled slices of a folder with ``images/`` and ``labels/`` (same file stems).

    ``annotated`` lists the label values the annotators drew (default: all); other classes
    are unknown in these samples, not background, and the loss treats them so.
    """
    from ..core.io import labelled_pairs, read_labels, read_slice

    images, labels, sources = [], [], []
    for ref, label_path in labelled_pairs(data_dir):
        image = read_slice(ref)
        img, lab = atlas_sample(image, read_labels(label_path, image.geometry), atlases,
                                level, config)
        images.append(img)
        labels.append(lab)
        sources.append(str(ref.path))
    mask = np.zeros((len(images), NUM_CLASSES), bool)
    mask[:, annotated if annotated is not None else slice(None)] = True
    mask[:, 0] = annotated is None
    return AtlasSamples(np.stack(images), np.stack(labels), mask, sources)
