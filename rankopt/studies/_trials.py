"""A study's trials and dense reference as plain numbers: what the front and the export
both read (neither imports the other for it)."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rankopt.storage import StudyRecord

__all__ = ["_float", "completed_trials", "dense_metrics"]


def _float(value: Any) -> float:
    """``value`` as a float, NaN when missing or not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def dense_metrics(study: optuna.Study) -> dict[str, float]:
    """The study's dense reference ``{"accuracy", "macs", "n_params", ...}`` (may be empty)."""
    return StudyRecord.of(study).dense.metrics()


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's COMPLETE trials, by trial number."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(trials, key=lambda t: t.number)
