"""Training samples in atlas space: each slice through the same chain inference uses.

A sample is the atlas-space image (256×256 at 1 mm, normalised) and the label map sent to
atlas space with nearest neighbour, plus which classes the source annotates (real data may
label only some muscles); :class:`.samples.AtlasSamples` holds them. Phantom samples can be
made by several processes at once (each slice's registration is single-threaded).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..core.geometry import SliceImage
from ..core.labels import NUM_CLASSES
from ..jobs import ProgressFn, report
from ..phantom import LEVELS, PhantomConfig, generate_phantom
from ..preprocess.atlas import Atlas
from ..preprocess.atlas_space import labels_to_atlas
from ..preprocess.chain import PreprocessConfig, preprocess_slice
from .samples import AtlasSamples


def atlas_sample(image: SliceImage, labels: np.ndarray, atlases: dict[str, Atlas], level: str,
                 config: PreprocessConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One slice and its labels in atlas space, through the inference chain."""
    pre = preprocess_slice(image, atlases, level, config)
    return pre.atlas_image, labels_to_atlas(labels, pre.registration.mapping)


def phantom_samples(n: int, seed: int, atlases: dict[str, Atlas], contrast: str = "T2w",
                    config: PreprocessConfig | None = None,
                    progress: ProgressFn | None = None,
                    workers: int = 1) -> AtlasSamples:
    """``n`` phantoms (levels alternating, seeds ``seed + k``), fully labelled.

    ``workers`` > 1 prepares them in that many processes; the samples are the same.
    Progress: stage ``phantoms``, ``done`` of ``n``.
    """
    jobs = [(seed + k, LEVELS[k % 2], contrast) for k in range(n)]
    results = []
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=_init_worker,
                                 initargs=(atlases, config)) as pool:
            for item in pool.map(_phantom_job, jobs, chunksize=4):
                results.append(item)
                report(progress, "phantoms", len(results), n)
    else:
        _init_worker(atlases, config)
        for job in jobs:
            results.append(_phantom_job(job))
            report(progress, "phantoms", len(results), n)
    images, labels, sources = zip(*results, strict=True) if results else ((), (), ())
    mask = np.ones((n, NUM_CLASSES), bool)
    return AtlasSamples(np.stack(images), np.stack(labels), mask, list(sources))


_WORKER: dict = {}


def _init_worker(atlases: dict[str, Atlas], config: PreprocessConfig | None) -> None:
    _WORKER.update(atlases=atlases, config=config)


def _phantom_job(job: tuple[int, str, str]) -> tuple[np.ndarray, np.ndarray, str]:
    seed, level, contrast = job
    case = generate_phantom(seed, PhantomConfig(level=level, contrast=contrast))
    img, lab = atlas_sample(case.image, case.labels, _WORKER["atlases"], level,
                            _WORKER["config"])
    return img, lab, case.image.source


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
