"""Evaluation of a prediction against ground truth: DAVIS J/F (planar and spherical), ID
switches, seam splits and coverage. ``python -m tasks evaluate`` calls :func:`evaluate` and
prints :func:`format_report`."""

from __future__ import annotations

from tasks.metrics.evaluate import EvaluationError, evaluate
from tasks.metrics.report import format_report

__all__ = ["EvaluationError", "evaluate", "format_report"]
