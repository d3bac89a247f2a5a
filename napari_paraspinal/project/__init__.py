"""Projects: cases, versioned label maps, measurements and a model registry in one folder."""

from .records import (
    AddResult,
    CaseRow,
    CheckReport,
    LabelVersion,
    MeasurementRow,
    ModelRow,
    ProjectError,
    TrainingCase,
)
from .schema import KINDS, STATUSES
from .store import Project

__all__ = ["KINDS", "STATUSES", "AddResult", "CaseRow", "CheckReport", "LabelVersion",
           "MeasurementRow", "ModelRow", "Project", "ProjectError", "TrainingCase"]
