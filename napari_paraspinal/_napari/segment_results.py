"""Where the Segment widget's results go: written in place, shown in batches, never over
a person's edits.

A run writes into one labels layer, ``"<image> labels"``, chosen when the run starts
(:func:`prepare_target`, as the Run button is clicked): the widget's own layer when it is
unedited, else (edited by a person, or not the widget's) that layer is renamed
``"<image> labels (kept HH:MM:SS)"``, hidden and left untouched, and a fresh layer starts
from a copy of it. Where the image has no labels layer yet, one is added with the first
result (as are the helper image layers asked for: N4 bias, uncertainty).

During the run each finished plane is written into the layer's array in place (no copy of
the stack) and :meth:`ResultWriter.show` refreshes each layer and its metadata once for
all planes written since the last call; the widget calls it at most ~10 times a second, so
the GUI thread does little per slice. The layer's fingerprint (``WRITTEN_KEY``, hashing the
whole stack) is stored when the run ends.

Painting during a run is never disturbed: the writer keeps a copy of what it wrote; a plane
whose pixels differ from that copy when its result arrives was edited meanwhile, so it is
left alone, and its result goes, when the run ends, to a separate layer ``"<image> labels
(run HH:MM:SS)"``. Layers added during a run keep the selected and active layers (and with
them the brush and mode the person is using); no layer is renamed or hidden during a run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from napari.layers import Image, Labels

from .layers import labels_layer
from .slices import (
    LEVEL_KEY,
    MODEL_KEY,
    QC_KEY,
    ROLE_KEY,
    WRITTEN_KEY,
    fingerprint,
    reorientation,
    was_edited,
)
from .tasks import SegmentStep

#: The helper image layers a run may fill: suffix, role, colormap, fill value, limits.
MAPS = {"bias": ("N4 bias", "bias", "magma", 1.0, (0.5, 1.5)),
        "uncertainty": ("uncertainty", "uncertainty", "inferno", 0.0, (0.0, 1.0))}


@contextmanager
def keep_selection(viewer: Any) -> Iterator[None]:
    """Add layers inside this block without changing the selected and active layers."""
    selection = viewer.layers.selection
    active, chosen = selection.active, set(selection)
    try:
        yield
    finally:
        chosen = {ly for ly in chosen if ly in viewer.layers}
        if active is not None and active in viewer.layers:
            selection.active = active
        else:
            selection.clear()
        selection.update(chosen)


def prepare_target(viewer: Any, image: Any) -> Labels | None:
    """The labels layer a run starts writing into (None: there is none, the writer adds
    one); an edited ``"<image> labels"`` is kept, renamed and hidden."""
    name = f"{image.name} labels"
    shape = np.shape(image.data)
    existing = next((ly for ly in viewer.layers
                     if isinstance(ly, Labels) and ly.name == name), None)
    if existing is None:
        return None
    same = existing.data.shape == shape
    if same and _writable(existing.data) and not was_edited(existing.data, existing.metadata):
        return existing
    start = np.array(existing.data, np.uint8) if same else np.zeros(shape, np.uint8)
    existing.name = f"{name} (kept {time.strftime('%H:%M:%S')})"
    existing.visible = False
    carried = {k: existing.metadata[k] for k in (MODEL_KEY, LEVEL_KEY, QC_KEY)
               if same and k in existing.metadata}
    return add_labels(viewer, image, name, reorientation(image).undo(start), carried)


def add_labels(viewer: Any, image: Any, name: str, native: np.ndarray,
               metadata: dict | None = None) -> Labels:
    """A labels layer over ``image`` from native-grid labels, marked as the widget's."""
    data, kwargs, _ = labels_layer(native, _view_of(image), name)
    kwargs["metadata"].update(metadata or {})
    kwargs["metadata"][WRITTEN_KEY] = fingerprint(data)
    return viewer.add_labels(data, **kwargs)


@dataclass
class _Out:
    """A labels layer being written, with the copy of what the writer wrote into it."""

    layer: Labels
    written: np.ndarray
    levels: list = field(default_factory=list)
    qc: list = field(default_factory=list)
    dirty: bool = False

    @classmethod
    def of(cls, layer: Labels) -> _Out:
        n = _planes(layer.data)
        return cls(layer, np.array(layer.data, copy=True),
                   _per_plane(layer.metadata.get(LEVEL_KEY), n),
                   _per_plane(layer.metadata.get(QC_KEY), n))

    def edited(self, plane: int) -> bool:
        return not np.array_equal(_plane(self.layer.data, plane), _plane(self.written, plane))

    def put(self, plane: int, values: np.ndarray, level: str | None, qc: dict) -> None:
        _plane(self.layer.data, plane)[...] = values
        _plane(self.written, plane)[...] = values
        self.levels[plane], self.qc[plane] = level, qc
        self.dirty = True

    def show(self, model: str) -> None:
        if not self.dirty:
            return
        self.dirty = False
        self.layer.metadata = {**self.layer.metadata, MODEL_KEY: model,
                               LEVEL_KEY: list(self.levels), QC_KEY: list(self.qc)}
        self.layer.refresh()

    def stamp(self) -> None:
        """Store the fingerprint of what was written (edits since then show as edits)."""
        self.layer.metadata = {**self.layer.metadata, WRITTEN_KEY: fingerprint(self.written)}


class ResultWriter:
    """Puts one run's finished planes into the viewer (see the module's docstring)."""

    def __init__(self, viewer: Any, image: Any, maps: tuple[str, ...] = ()) -> None:
        self.viewer, self.image, self.maps = viewer, image, maps
        self.name = f"{image.name} labels"
        self.model = ""
        self.side: Labels | None = None  # results of the planes edited during the run
        self._diverted: dict[int, tuple[np.ndarray, str | None, dict]] = {}
        target = prepare_target(viewer, image)
        self._target = None if target is None else _Out.of(target)
        self._maps: dict[str, Image] = {}
        self._stale: set[str] = set()

    @property
    def target(self) -> Labels | None:
        """The labels layer the run writes into (None until the first result, when the
        image had none)."""
        return None if self._target is None else self._target.layer

    @property
    def diverted(self) -> list[int]:
        """Planes edited during the run, their results set aside for :attr:`side`."""
        return sorted(self._diverted)

    def add(self, step: SegmentStep) -> None:
        """Write one finished plane (``step.display``) in place; shown at :meth:`show`."""
        if step.plane is None or step.display is None:
            return
        self.model = step.model
        plane, level = step.plane, step.level
        if self._target is None:  # added without changing the selection, brush or mode
            with keep_selection(self.viewer):
                self._target = _Out.of(add_labels(self.viewer, self.image, self.name,
                                                  np.zeros(np.shape(self.image.data),
                                                           np.uint8)))
        if self._target.edited(plane):  # painted since the run started: never written over
            self._diverted[plane] = (step.display, level, step.qc)
        else:
            self._target.put(plane, step.display, level, step.qc)
        for key in self.maps:
            values = getattr(step, key, None)
            if values is not None:
                _plane(self._map(key).data, plane)[...] = values
                self._stale.add(key)

    def show(self) -> None:
        """Refresh what was written since the last call (each layer once)."""
        if self._target is not None:
            self._target.show(self.model)
        for key in self._stale:
            self._maps[key].refresh()
        self._stale.clear()

    def finish(self) -> None:
        """At the run's end: show the rest, store the fingerprint, and add the layer of
        the planes edited during the run (without changing the selection)."""
        self.show()
        if self._target is None:
            return
        self._target.stamp()
        if self._diverted:
            with keep_selection(self.viewer):
                side = add_labels(self.viewer, self.image,
                                  f"{self.name} (run {time.strftime('%H:%M:%S')})",
                                  np.zeros(np.shape(self.image.data), np.uint8))
            out = _Out.of(side)
            for plane, (values, level, qc) in self._diverted.items():
                out.put(plane, values, level, qc)
            out.show(self.model)
            out.stamp()
            self.side = side

    def _map(self, key: str) -> Image:
        """The helper image layer ``"<image> <suffix>"`` (added under the image, without
        changing the selection, when missing)."""
        if key in self._maps:
            return self._maps[key]
        suffix, role, colormap, fill, limits = MAPS[key]
        image, name = self.image, f"{self.image.name} {suffix}"
        layer = next((ly for ly in self.viewer.layers if isinstance(ly, Image)
                      and ly.name == name and ly.metadata.get(ROLE_KEY) == role), None)
        if layer is None or layer.data.shape != np.shape(image.data) or not _writable(
                layer.data):
            with keep_selection(self.viewer):
                layer = self.viewer.add_image(
                    np.full(np.shape(image.data), fill, np.float32), name=name,
                    scale=image.scale, translate=image.translate,
                    metadata={**image.metadata, ROLE_KEY: role}, colormap=colormap,
                    opacity=0.5, contrast_limits=limits)
                self.viewer.layers.move(self.viewer.layers.index(layer),
                                        self.viewer.layers.index(image) + 1)
        self._maps[key] = layer
        return layer


def _per_plane(values: Any, n: int) -> list:
    """A per-plane metadata list of length ``n`` (None where missing)."""
    values = list(values or [])[:n]
    return values + [None] * (n - len(values))


def _writable(data: Any) -> bool:
    return isinstance(data, np.ndarray) and data.flags.writeable


def _view_of(image: Any) -> dict:
    """The part of an image layer's kwargs that :func:`labels_layer` copies."""
    return {"scale": list(image.scale), "translate": list(image.translate),
            "metadata": dict(image.metadata)}


def _planes(data: np.ndarray) -> int:
    return 1 if np.ndim(data) == 2 else int(np.shape(data)[0])


def _plane(data: np.ndarray, plane: int) -> np.ndarray:
    """A plane of a stack, or the whole of a 2-D array (a view: writes go to ``data``)."""
    return data if data.ndim == 2 else data[plane]
