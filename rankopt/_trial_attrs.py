"""Names of trial user attributes that both the search (writer) and the studies (reader) use."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["DUPLICATE_ATTR", "PLAN_KEY_ATTR", "is_repeat"]

DUPLICATE_ATTR = "duplicate_of"
"""User attribute of a trial that realised an already evaluated plan and took that trial's
results instead of evaluating it again: that trial's number."""

PLAN_KEY_ATTR = "plan_key"
"""User attribute: a digest of the trial's realised layers (method, ranks, options)."""


def is_repeat(trial: FrozenTrial) -> bool:
    """Whether ``trial`` took an earlier trial's results instead of evaluating its plan
    (such trials do not count towards ``n_trials`` and are left off the Pareto front)."""
    return DUPLICATE_ATTR in trial.user_attrs
