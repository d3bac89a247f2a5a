"""Fixtures shared by the test modules: phantoms (made once per session) and phantom files.

``phantom(seed, **config)`` is :func:`generate_phantom` with a session cache: the generator
is deterministic, so a phantom several modules use is painted once. Its arrays are read-only,
so a test that wants to change one must copy it first (a cached phantom cannot be changed
behind another test's back). ``phantom_files(name, seed, **config)`` writes one as NIfTI
(``images/<name>.nii.gz`` and ``labels/<name>.nii.gz`` in a session folder) and returns both
paths and the phantom; tests that overwrite or delete inputs copy them first.

After every test, napari viewers a test opened and closed by itself (the app's windows, not
``make_napari_viewer``'s) are collected, so napari's own check in the next
``make_napari_viewer`` test does not find them still alive.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from napari_paraspinal.core.writers import write_image, write_labels
from napari_paraspinal.phantom import PhantomCase, PhantomConfig, generate_phantom


class PhantomFiles(NamedTuple):
    """A phantom written to disk: its image, its true labels, and the phantom itself."""

    image: Path
    labels: Path
    case: PhantomCase


def _frozen(case: PhantomCase) -> PhantomCase:
    for array in (case.image.data, case.labels, case.fat_fraction):
        array.flags.writeable = False
    return case


@pytest.fixture(scope="session")
def phantom() -> Callable[..., PhantomCase]:
    """``phantom(seed, **config)``: the phantom of ``PhantomConfig(**config)`` (read-only)."""
    made: dict[tuple, PhantomCase] = {}

    def make(seed: int, **config: Any) -> PhantomCase:
        key = (seed, tuple(sorted(config.items())))
        if key not in made:
            made[key] = _frozen(generate_phantom(seed, PhantomConfig(**config)))
        return made[key]

    return make


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory: pytest.TempPathFactory,
                  phantom: Callable[..., PhantomCase]) -> Callable[..., PhantomFiles]:
    """``phantom_files(name, seed, **config)``: the phantom as ``images/<name>.nii.gz`` and
    ``labels/<name>.nii.gz`` in a session folder (one name, one phantom)."""
    root = tmp_path_factory.mktemp("phantom-files")
    written: dict[str, tuple] = {}

    def write(name: str, seed: int, **config: Any) -> PhantomFiles:
        key = (seed, tuple(sorted(config.items())))
        if name in written:
            if written[name][0] != key:
                raise ValueError(f"phantom file {name!r} already holds another phantom")
            return written[name][1]
        case = phantom(seed, **config)
        files = PhantomFiles(write_image(case.image, root / "images" / f"{name}.nii.gz"),
                             write_labels(np.asarray(case.labels), case.image.geometry,
                                          root / "labels" / f"{name}.nii.gz"),
                             case)
        written[name] = (key, files)
        return files

    return write


@pytest.fixture(autouse=True)
def _closed_viewers_collected() -> Iterator[None]:
    yield
    qt_viewer = sys.modules.get("napari._qt.qt_viewer")
    if qt_viewer is None or not len(qt_viewer.QtViewer._instances):
        return  # nothing left (or napari never loaded): no cost for the other tests
    from qtpy.QtCore import QCoreApplication, QEvent

    app = QCoreApplication.instance()
    if app is not None:
        for _ in range(3):  # closed windows are deleted by deferred-delete events
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            app.processEvents()
    gc.collect()
