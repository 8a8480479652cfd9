"""A study's trials and dense reference as plain numbers: what the front and the export
both read (neither imports the other for it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rankopt.storage import LATENCY_RATIOS, StudyRecord

__all__ = ["_float", "completed_trials", "dense_metrics", "latency_ratios"]


def _float(value: Any) -> float:
    """``value`` as a float, NaN when missing or not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def dense_metrics(study: optuna.Study) -> dict[str, float]:
    """The study's dense reference ``{"accuracy", "macs", "n_params", ...}`` (may be empty);
    its latency per batch size as ``latency_ms_batch<b>``."""
    dense = StudyRecord.of(study).dense
    out = dense.metrics()
    out.update({f"latency_ms_batch{b}": float(ms) for b, ms in dense.latency_ms.items()})
    return out


def latency_ratios(attrs: Mapping[str, Any], dense: Mapping[str, float]) -> dict[str, float]:
    """A trial's predicted latency / dense latency per column of
    :data:`~rankopt.storage._attrs.LATENCY_RATIOS` (NaN where the study has no latency); from
    ``latency_ms_batch<b>`` and the dense time where the trial predates the ratios."""
    out: dict[str, float] = {}
    for col in LATENCY_RATIOS:
        ratio = _float(attrs.get(col))
        if math.isnan(ratio):
            batch = col[len("latency_ratio_") :]
            base = dense.get(f"latency_ms_{batch}", math.nan)
            ratio = _float(attrs.get(f"latency_ms_{batch}")) / base if base > 0 else math.nan
        out[col] = ratio
    return out


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's COMPLETE trials, by trial number."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(trials, key=lambda t: t.number)
