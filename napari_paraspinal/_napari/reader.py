"""napari reader: DICOM files and series folders, NIfTI, NRRD, MHA/MHD."""

from __future__ import annotations

from collections.abc import Callable

from ..core.errors import InputError
from ..core.io import (
    InputRef,
    expand_inputs,
    image_stem,
    is_supported,
    list_slices,
    read_slice,
)
from .layers import image_layer

LayerData = list[tuple]

#: Raster formats need an explicit spacing; napari cannot ask for one, so they are left
#: to napari's own readers.
_RASTER = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], LayerData] | None:
    """Return :func:`read_layers` when every path is something this plugin reads, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    for p in paths:
        if p.lower().endswith(_RASTER) or not is_supported(p):
            return None
    return read_layers


def read_layers(path: str | list[str]) -> LayerData:
    """One image layer per input; a 3-D input becomes a stack of its axial slices."""
    paths = [path] if isinstance(path, str) else list(path)
    layers: LayerData = []
    for ref in expand_inputs(paths):
        layers.append(image_layer(_read_all_slices(ref), name=image_stem(ref.path)))
    return layers


def _read_all_slices(ref: InputRef) -> list:
    infos = list_slices(ref)
    if len(infos) <= 1:
        return [read_slice(ref)]
    slices = [read_slice(ref, index=k) for k in range(len(infos))]
    if len({s.geometry.shape for s in slices}) != 1:
        raise InputError(ref.path, "slices of this series differ in size; open them one by one")
    return slices
