"""Queued (WAITING) trials described in one line, for ``search``, ``front`` and ``report``.

Trials stay WAITING when the study's total is reached before they ran: seed trials that
several workers did not get to, retries of trials whose worker was lost. Optuna runs WAITING
trials before it samples new ones, so they run first when the study is resumed with a
larger ``--n-trials``.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from rankopt.storage._attrs import SEED_ATTR

__all__ = ["describe_queued", "queued_line"]


def describe_queued(trial: FrozenTrial) -> str:
    """What one WAITING trial is: ``seed vbmf``, ``retry of trial 5``,
    ``retry of trial 5 [seed vbmf]``, ``enqueued``."""
    history = trial.system_attrs.get("retry_history")
    failed = history[-1] if isinstance(history, list) and history else None
    if failed is None:
        failed = trial.system_attrs.get("failed_trial")
    seed = trial.user_attrs.get(SEED_ATTR)
    if failed is not None:
        return f"retry of trial {failed}" + (f" [seed {seed}]" if seed else "")
    return f"seed {seed}" if seed else "enqueued"


def queued_line(trials: Sequence[FrozenTrial]) -> str:
    """One line about the WAITING trials among ``trials``; ``""`` when there are none.

    Example: ``2 trials queued (seed vbmf, retry of trial 5): they run first when the
    study is resumed with a larger --n-trials``.
    """
    waiting = sorted((t for t in trials if t.state == TrialState.WAITING), key=lambda t: t.number)
    if not waiting:
        return ""
    what = ", ".join(describe_queued(t) for t in waiting)
    noun = "trial" if len(waiting) == 1 else "trials"
    verb = "it runs" if len(waiting) == 1 else "they run"
    return (
        f"{len(waiting)} {noun} queued ({what}): {verb} first when the study is resumed "
        "with a larger --n-trials"
    )
