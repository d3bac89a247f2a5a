"""Real labelled slices as training samples on the network's frame (partial labels).

Synthetic slices teach shapes and context in any contrast; a few real slices teach what the
generator cannot paint (real bowel, kidneys, fat planes, noise). Each slice of a labelled
real series (:mod:`.realdata`) goes through the same preprocessing as inference (N4,
normalisation, body frame) and its labels follow with nearest neighbour. A series labels
only some structures (MF and ES on ``lpm_tum01``), so each sample says which classes it
annotates and the loss merges the rest with background (:mod:`.nets.losses`).

A model trained on a real case is not zero-shot on it: its card names the cases
(``data.real_images_used``) and ``paraspinal bench real`` says so per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core.errors import InputError
from .core.labels import label_mask
from .jobs import ProgressFn, report
from .nets.samples import AtlasSamples
from .preprocess.atlas_space import labels_to_atlas
from .preprocess.chain import AUTO, PreprocessConfig, preprocess_slice
from .realdata import RealSeries, read_series_slice, real_series


def pick_series(names: Sequence[str], root: Path | None = None) -> list[RealSeries]:
    """The labelled real series of the named cases (``lpm_tum01``: all its contrasts) or
    series (``lpm_tum01/water``); an unknown name is an error naming what exists."""
    found = real_series(root)
    chosen = []
    for name in names:
        hits = [s for s in found if name in (s.case, s.name)]
        if not hits:
            known = sorted({s.case for s in found} | {s.name for s in found})
            raise ValueError(f"no labelled real series {name!r}; known: {', '.join(known)}")
        chosen += [s for s in hits if s not in chosen]
    return chosen


def frame_samples(series: Sequence[RealSeries], preprocess: PreprocessConfig, atlases: dict,
                  progress: ProgressFn | None = None) -> AtlasSamples:
    """Every slice of ``series`` on the network's frame, with its labels and label mask.

    A slice the chain refuses is left out (and reported through ``progress``: stage
    ``frame``, ``done`` series of ``total``, ``case`` the series).
    """
    images, labels, masks, sources = [], [], [], []
    for n, s in enumerate(series):
        mask = label_mask(s.annotated)
        for k in range(s.n_slices()):
            image, truth = read_series_slice(s, k)
            try:
                pre = preprocess_slice(image, atlases, AUTO, preprocess)
            except InputError as err:
                report(progress, "frame", n, len(series), s.name,
                       f"{s.name} slice {k} left out: {err.problem}")
                continue
            images.append(pre.atlas_image.astype(np.float32))
            labels.append(labels_to_atlas(truth, pre.registration.mapping))
            masks.append(mask)
            sources.append(f"real:{s.name}:{k}")
        report(progress, "frame", n + 1, len(series), s.name,
               f"{s.name}: {s.n_slices()} slices on the frame")
    if not images:
        raise ValueError("no real slice could be prepared")
    return AtlasSamples(np.stack(images), np.stack(labels).astype(np.uint8), np.stack(masks),
                        sources)
