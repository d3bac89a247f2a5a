"""Projects: cases, versioned label maps, measurements and a model registry in one folder."""

from .store import (
    KINDS,
    STATUSES,
    AddResult,
    CaseRow,
    CheckReport,
    LabelVersion,
    MeasurementRow,
    ModelRow,
    Project,
    ProjectError,
    TrainingCase,
)

__all__ = ["KINDS", "STATUSES", "AddResult", "CaseRow", "CheckReport", "LabelVersion",
           "MeasurementRow", "ModelRow", "Project", "ProjectError", "TrainingCase"]
