"""Symptom scales as data: definition files, their strict loader, and scoring.

Pure Python (standard library only, no Flask), so forms, exports, charts and the CLI
can all share one source of truth for items, allowed scores and published bands.
Scales carry descriptive severity labels only, never any treatment guidance.
"""

from .loader import BUILTIN_DIR, ScaleDefinitionError, load_scale_file, load_scales
from .model import (
    NOT_ASSESSED_REASONS,
    Anchor,
    Band,
    Item,
    Measurement,
    PointsRule,
    Scale,
    ScoreError,
    ScoreResult,
    Severity,
)

__all__ = [
    "BUILTIN_DIR",
    "NOT_ASSESSED_REASONS",
    "Anchor",
    "Band",
    "Item",
    "Measurement",
    "PointsRule",
    "Scale",
    "ScaleDefinitionError",
    "ScoreError",
    "ScoreResult",
    "Severity",
    "load_scale_file",
    "load_scales",
]
