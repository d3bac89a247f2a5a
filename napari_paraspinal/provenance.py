"""The provenance sheet: one schema for every measurements table (run, project, napari).

Whichever path wrote a spreadsheet (``paraspinal run``, ``paraspinal export`` of a project,
the napari Export widget), its ``provenance`` sheet has the columns of :data:`COLUMNS` in that
order, with the same meaning, so a reader can trace any number the same way and tables from
different paths can be stacked. A column a path cannot know is blank (the napari export has
no file hash for a layer painted in memory; a run's labels have no version number). What only
one path knows (the run's identifiers, a project's source check) follows after them.
"""

from __future__ import annotations

import json
from typing import Any

from . import __version__
from .core.config import config_to_dict
from .fat import FatConfig
from .preprocess.n4 import N4Config

#: Every provenance sheet's first columns, in order.
COLUMNS: tuple[str, ...] = (
    "case",  # the case id of the measurements sheet
    "source",  # the image it was measured on (path, or the napari layer's source)
    "source_sha256",  # the image file's hash where the path keeps one (projects)
    "status",  # ok / failed ... of the case
    "message",  # why it failed, or notes
    "software",  # napari-paraspinal and its version
    "bias_correction",  # N4 settings as JSON, or "none"
    "fat_method",  # fat separation settings as JSON
    "labels",  # where the labels came from: model, a file, a layer
    "label_status",  # automatic / given / edited / corrected / verified
    "label_version",  # the project's label version number
    "labels_sha256",  # the label file's hash (projects)
    "verified_labels",  # label values a person vouched for (projects)
    "model",  # the model that segmented, name and version
    "model_weights_sha256",  # its weights' hash
    "preprocessing",  # the preprocessing it ran with, as JSON
    "inference",  # the inference options (sides, mirror, precision), as JSON
    "qc_flags",  # the registration / segmentation QC flags, as JSON
    "time",  # when the table was written
)


def method_columns(n4: N4Config | None, fat: FatConfig) -> dict[str, str]:
    """This software's version and the bias correction and fat separation measured with."""
    return {"software": f"napari-paraspinal {__version__}",
            "bias_correction": json.dumps(config_to_dict(n4)) if n4 is not None else "none",
            "fat_method": json.dumps(config_to_dict(fat))}


def provenance_row(values: dict[str, Any], n4: N4Config | None, fat: FatConfig,
                   **extra: Any) -> dict[str, Any]:
    """One provenance row: :data:`COLUMNS` in order (blank where ``values`` has none; the
    method columns from ``n4`` and ``fat``), then ``extra``.

    ``values`` may not hold a key outside :data:`COLUMNS` (that is what ``extra`` is for), so
    a misspelt column fails here instead of becoming a new one.
    """
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise ValueError(f"not provenance columns: {sorted(unknown)} (pass them as extra)")
    merged = {**values, **method_columns(n4, fat)}
    return {**{c: merged.get(c, "") for c in COLUMNS}, **extra}
