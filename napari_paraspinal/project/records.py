"""What the project store hands out: frozen rows of its tables and reports of its checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputError
from ..core.geometry import Geometry
from ..core.io import InputRef


class ProjectError(InputError):
    """A project cannot be opened or created, or a request does not fit its state."""


class StaleVersionError(ProjectError):
    """An automatic save lost a race: the case changed since the worker read it (or its
    latest version is a person's, which an automatic one never supersedes)."""


@dataclass(frozen=True)
class SourceFingerprint:
    """A case's source as it was when the case was added: total bytes, newest mtime and
    SHA-256 (of the file; of its files' names and hashes for a DICOM series)."""

    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class CaseRow:
    """One case: which slice of which source, on which grid, and where it stands."""

    id: str
    source: str
    series_uid: str | None
    slice_index: int
    slice_count: int
    spacing: tuple[float, float] | None  # pixel spacing given when added (PNG, ...)
    level: str | None
    geometry: Geometry
    status: str
    message: str
    qc_flags: dict
    verified_labels: list[int]  # labels a person vouched for in the latest versions
    added_at: str
    updated_at: str
    fingerprint: SourceFingerprint | None = None  # None: added before fingerprints existed
    uncertainty: float | None = None  # of its last segmentation (:mod:`.worklist`); None: none

    @property
    def ref(self) -> InputRef:
        """The input to read the slice from again."""
        return InputRef(Path(self.source), self.series_uid)


@dataclass(frozen=True)
class LabelVersion:
    """One saved label map of a case; its file never changes."""

    id: int
    case_id: str
    version: int
    kind: str
    relpath: str  # relative to the project folder, with forward slashes
    path: Path
    sha256: str
    labelled: list[int]  # label values this version's author annotated or vouched for
    model_id: str | None
    created_at: str
    author: str | None = None  # the OS user who saved it; None: saved before authors were kept


@dataclass(frozen=True)
class MeasurementRow:
    """Measurements of a case made on one label version."""

    id: int
    case_id: str
    label_version_id: int
    row: dict
    created_at: str


@dataclass(frozen=True)
class ModelRow:
    """A registered model version and its card."""

    id: str
    relpath: str
    path: Path
    card: dict
    parent: str | None
    weights_sha256: str
    created_at: str
    active: bool


@dataclass(frozen=True)
class TrainingCase:
    """A case usable for fine-tuning: its latest, human-made label version."""

    case: CaseRow
    version: LabelVersion
    labels: list[int]  # the label values that may be trusted (partial labels are normal)


@dataclass
class AddResult:
    """Outcome of :meth:`Project.add`: new ids, ids already there, and bad inputs."""

    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: list[InputError] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        """Every case id the inputs map to, new or not."""
        return [*self.added, *self.existing]


@dataclass
class CheckReport:
    """What :meth:`Project.check` found (and :meth:`Project.repair` did)."""

    integrity: list[str] = field(default_factory=list)  # SQLite integrity_check messages
    foreign_keys: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)  # rows whose file is gone
    hash_mismatches: list[str] = field(default_factory=list)  # rows whose file changed
    inconsistent: list[str] = field(default_factory=list)  # e.g. status vs latest version
    orphan_files: list[str] = field(default_factory=list)  # files no row points to
    temp_files: list[str] = field(default_factory=list)  # staging left by interrupted runs
    sources: list[str] = field(default_factory=list)  # case sources changed or missing
    stale_claims: list[str] = field(default_factory=list)  # claims of dead or lost workers
    notes: list[str] = field(default_factory=list)  # e.g. not fingerprinted, claims held
    checked: dict[str, int] = field(default_factory=dict)  # what was looked at, counted
    repaired: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Real problems; orphans, temporary files and stale claims are harmless leftovers."""
        return [*self.integrity, *self.foreign_keys, *self.missing_files,
                *self.hash_mismatches, *self.inconsistent, *self.sources]

    @property
    def ok(self) -> bool:
        """True when the database and the files it points to agree."""
        return not self.problems

    @property
    def clean(self) -> bool:
        """True when there is not even a leftover file or claim."""
        return self.ok and not self.orphan_files and not self.temp_files and \
            not self.stale_claims
