"""BIDS derivatives output of ``paraspinal run --bids``: the run's folder is also a BIDS
derivatives dataset, so BIDS tools find each case's label map and measurements.

- ``sub-<label>[/ses-<label>]/anat/<entities>_dseg.nii.gz``: the case's label map, a copy of
  ``labels/<case>.nii.gz`` (same grid and values). It lies on the input's own grid, which BIDS
  lets a derivative name without a ``space`` entity; its ``_dseg.json`` gives
  ``SpatialReference`` (the source image as a BIDS URI, else ``orig``) and ``Sources``.
- ``<entities>_morph.tsv`` and ``.json``: the case's rows of the measurements table (``n/a``
  where empty), every column described with its units, plus the method, software and version.
  ``morph`` is the suffix of BIDS's structural-derivatives proposal (BEP011); the released
  schema has no suffix for measurement tables.
- At the root: ``dataset_description.json``, ``dseg.tsv`` (the label table, which every
  ``_dseg`` image inherits) with ``dseg.json``, a ``README.md`` and a ``.bidsignore`` naming
  the run's own non-BIDS files (tables, ``labels/``, overlays, kept results, manifest).

Subject, session and the entities a segmentation may carry (``acq``, ``run``, ...) come from a
BIDS raw input's file name (``sub-01_ses-02_acq-ax_T2w.nii.gz``); any other input's case id
becomes its subject label (letters and digits only). A name already used in the run gets
``desc-<case>``.

Names come from :mod:`.bids_names`, the tables' contents from :mod:`.bids_tables`; this module
writes the dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .bids_names import KEEP, CaseFiles, bids_label, parse_source
from .bids_tables import DSEG_COLUMNS, SOFTWARE, dseg_rows, morph_sidecar, tsv_text
from .core.atomic import atomic_path, write_text_atomic
from .core.config import config_to_dict
from .export import columns_of
from .run_output import CSV, MANIFEST, SUPERSEDED, XLSX, RunOutput, writing
from .run_resume import RESULTS

if TYPE_CHECKING:
    from .pipeline import CaseResult, RunConfig, Source
    from .segment import Model

BIDS_VERSION = "1.10.0"
DATATYPE = "anat"
DESCRIPTION, DSEG_TSV, DSEG_JSON = "dataset_description.json", "dseg.tsv", "dseg.json"
README, BIDSIGNORE = "README.md", ".bidsignore"
DATASET_FILES = (DESCRIPTION, DSEG_TSV, DSEG_JSON, README, BIDSIGNORE)
#: The run's files that are not part of the BIDS dataset.
NOT_BIDS = ("labels/", "overlays/", f"{RESULTS}/", f"{SUPERSEDED}/", CSV, XLSX, MANIFEST)


class BidsDataset:
    """The BIDS side of one run's output folder: names each case's files, unique in the run,
    and writes them."""

    def __init__(self, folder: str | os.PathLike[str], sources: Iterable[Path]) -> None:
        self.folder = Path(folder)
        self.links: dict[str, Path] = {}  # dataset name in BIDS URIs -> raw dataset folder
        for path in sources:
            src = parse_source(path)
            if src is not None and src.root is not None and src.root not in self.links.values():
                self.links["raw" if not self.links else f"raw{len(self.links) + 1}"] = src.root
        self._cases: dict[str, CaseFiles] = {}
        self._taken: set[str] = set()

    def dataset_files(self) -> list[Path]:
        """The dataset-level files (written once per run)."""
        return [self.folder / name for name in DATASET_FILES]

    def write_dataset(self) -> None:
        """Write ``dataset_description.json``, ``dseg.tsv``/``.json``, README, .bidsignore."""
        _write_json(self.folder / DESCRIPTION, self.description())
        with writing(self.folder / DSEG_TSV):
            write_text_atomic(self.folder / DSEG_TSV, tsv_text(dseg_rows()))
        _write_json(self.folder / DSEG_JSON, DSEG_COLUMNS)
        for name, text in ((README, _README), (BIDSIGNORE, "\n".join(NOT_BIDS) + "\n")):
            with writing(self.folder / name):
                write_text_atomic(self.folder / name, text)

    def description(self) -> dict:
        """``dataset_description.json``: the BIDS-required keys, the software that made the
        dataset and, where inputs came from BIDS datasets, those datasets."""
        desc: dict = {
            "Name": "napari-paraspinal: lumbar paraspinal muscle segmentations and measurements",
            "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
            "GeneratedBy": [{"Name": SOFTWARE, "Version": __version__,
                             "Description": "segmentation of SP, DI, psoas, multifidus and "
                                            "erector spinae on axial MRI; areas and fat %"}]}
        if self.links:
            desc["SourceDatasets"] = [_source_dataset(root, self._uri(root))
                                      for root in self.links.values()]
            desc["DatasetLinks"] = {name: self._uri(root) for name, root in self.links.items()}
        return desc

    def case_files(self, cid: str, sources: Sequence[Path] = ()) -> CaseFiles:
        """A case's files, named from its first source (kept for the run once named)."""
        if cid in self._cases:
            return self._cases[cid]
        src = parse_source(sources[0]) if sources else None
        if src is None:
            entities = {"sub": bids_label(cid)}
        else:
            entities = {k: src.entities[k] for k in ("sub", "ses", *KEEP) if k in src.entities}
        stem, n = _joined(entities), 1
        while stem.casefold() in self._taken:
            stem = _joined({**entities, "desc": bids_label(cid) + (str(n) if n > 1 else "")})
            n += 1
        self._taken.add(stem.casefold())
        folder = self.folder / f"sub-{entities['sub']}"
        if "ses" in entities:
            folder = folder / f"ses-{entities['ses']}"
        uris = tuple(u for u in (self._bids_uri(p) for p in sources) if u)
        self._cases[cid] = CaseFiles(folder / DATATYPE, stem, uris)
        return self._cases[cid]

    def write_case(self, cid: str, labels: Path | None, rows: Sequence[Mapping],
                   method: Mapping) -> dict[str, Path]:
        """Write a case's segmentation (when it has a label map) and measurements with their
        sidecars; returns the written data files by kind."""
        files, written, derived = self._cases[cid], {}, []
        if labels is not None and Path(labels).is_file():
            dseg = written["dseg"] = files.path("dseg.nii.gz")
            with writing(dseg), atomic_path(dseg) as tmp:
                shutil.copyfile(labels, tmp)
            side: dict = {"Description": "lumbar paraspinal labels (values in dseg.tsv): "
                                         + str(method.get("Labels", ""))}
            side["SpatialReference"] = files.sources[0] if files.sources else "orig"
            if files.sources:
                side["Sources"] = list(files.sources)
            if method.get("LabelStatus") == "automatic":
                side["Manual"] = False
            _write_json(files.path("dseg.json"), side)
            derived = [f"bids::{dseg.relative_to(self.folder).as_posix()}"]
        morph = written["measurements"] = files.path("morph.tsv")
        with writing(morph):
            write_text_atomic(morph, tsv_text(rows))
        _write_json(files.path("morph.json"),
                    morph_sidecar(columns_of(rows), method, derived + list(files.sources)))
        return written

    def _bids_uri(self, path: Path) -> str | None:
        src = parse_source(path)
        names = {root: name for name, root in self.links.items()}
        if src is None or src.root not in names:
            return None
        return f"bids:{names[src.root]}:{src.relpath}"

    def _uri(self, root: Path) -> str:
        """A raw dataset's location: relative when this dataset lies inside it (the usual
        ``<raw>/derivatives/<pipeline>``), else a file URI."""
        here = Path(os.path.abspath(self.folder))
        if here.is_relative_to(root):
            return Path(os.path.relpath(root, here)).as_posix()
        return root.as_uri()


def start(folder: Path, refs: Sequence[Source], out: RunOutput) -> BidsDataset:
    """The BIDS dataset of a run: its dataset-level files recorded in the manifest (older ones
    moved aside) and written."""
    bids = BidsDataset(folder, [p for ref in refs for p in source_paths(ref)])
    out.run_files(bids.dataset_files())
    bids.write_dataset()
    return bids


def write_result(bids: BidsDataset, result: CaseResult, sources: Sequence[Path],
                 config: RunConfig, model: Model | None) -> None:
    """Write a finished case's BIDS files (its rows as the table keeps them, see
    ``--levels``) and add them to ``result.outputs``."""
    from .levels import select_levels

    rows = select_levels(result.rows, config.levels)[0] if config.levels else result.rows
    bids.case_files(result.case, sources)
    method = method_of(config, model if result.label_status == "automatic" else None,
                       result.label_status)
    written = bids.write_case(result.case, result.outputs.get("labels"), rows, method)
    result.outputs.update({f"bids_{k}": v for k, v in written.items()})


def source_paths(ref: Source) -> list[Path]:
    """The image files of an input (water first for a Dixon pair)."""
    pair = getattr(ref, "water", None), getattr(ref, "fat", None)
    return [r.path for r in pair] if pair[0] is not None else [ref.path]


def method_of(config: RunConfig, model: Model | None, label_status: str) -> dict:
    """How the numbers were made: labels' origin, model (name, version, weights' hash,
    settings), bias correction and fat separation."""
    labels = {"automatic": "segmented by the model", "given": "given label maps (--labels)"}
    method: dict = {"LabelStatus": label_status, "Labels": labels.get(label_status, "none"),
                    "BiasCorrection": config_to_dict(config.n4) if config.n4 else "none",
                    "FatSeparation": config_to_dict(config.fat)}
    if model is not None:
        card = model.card
        method["Model"] = {"Name": card.name, "Version": card.version,
                           "WeightsSHA256": card.weights_sha256,
                           "Preprocessing": {**card.preprocessing,
                                             **config_to_dict(model.preprocess)},
                           "Inference": {"sides": model.sides, "mirror": model.mirror,
                                         "precision": model.precision}}
    return json.loads(json.dumps(method, default=str))


def _source_dataset(root: Path, uri: str) -> dict:
    """A ``SourceDatasets`` entry: where the raw dataset is, and its DOI when it says one."""
    entry = {"URL": uri}
    try:
        raw = json.loads((root / DESCRIPTION).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = {}
    if isinstance(raw, dict) and isinstance(raw.get("DatasetDOI"), str):
        entry["DOI"] = raw["DatasetDOI"]
    return entry


def _joined(entities: Mapping[str, str]) -> str:
    return "_".join(f"{k}-{v}" for k, v in entities.items())


def _write_json(path: Path, data: Mapping) -> None:
    with writing(path):
        write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


_README = ("# napari-paraspinal derivatives\n\nLumbar paraspinal muscle segmentations "
           "(`*_dseg.nii.gz`, labels in `dseg.tsv`) and measurements (`*_morph.tsv`, columns "
           "in `*_morph.json`); the run's own files are named in `.bidsignore`.\n")
