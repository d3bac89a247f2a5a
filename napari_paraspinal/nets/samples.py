"""Atlas-space training samples as plain arrays, saved as ``.npz`` without pickled objects.

Kept apart from :mod:`.dataset` (which runs the preprocessing chain to make samples) so that
training and the ablation can run where only numpy and torch are installed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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
            return cls(z["images"].astype(np.float32, copy=False), z["labels"], z["label_mask"],
                       json.loads(str(z["sources"])))

    @classmethod
    def concatenate(cls, parts: list[AtlasSamples]) -> AtlasSamples:
        return cls(np.concatenate([p.images for p in parts]),
                   np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.label_mask for p in parts]),
                   [s for p in parts for s in p.sources])
