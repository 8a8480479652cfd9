"""Trials that realise a plan an earlier trial already evaluated.

Different parameters can realise the same plan: the allocation rounds each layer to a point
of its rank path, and a local move that nudges a weight often lands on the same points. On
resnet8 / mnist5k at 7 % of the MACs, 2 of the 12 trials after the seeds re-evaluated an
earlier plan (3 of 12 on vgg_small), and the repeats said more about the proxy's noise than
about the plan (the same plan scored 0.856 and 0.872). Such a trial now takes the earlier
trial's results at once (no decomposition, no fine-tune; ``user_attrs["duplicate_of"]``
names it), and it does not count towards ``n_trials``: a study of ``n_trials`` trials
evaluates ``n_trials`` distinct plans (as long as the sampler keeps proposing new ones).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from rankopt.plan import ChannelPruning, LayerPlan
from rankopt.storage import PLAN_KEY_ATTR, is_repeat

__all__ = [
    "DistinctTrialsStopper",
    "earlier_evaluation",
    "max_attempts",
    "n_distinct_finished",
    "plan_key",
]

_DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def plan_key(layers: Sequence[LayerPlan], pruning: Sequence[ChannelPruning] = ()) -> str:
    """A short digest of a plan's layers and pruned channels (order-independent; 16 hex
    digits; a plan that prunes nothing has the digest it had before pruning existed)."""
    rows: list[Any] = sorted((lp.to_dict() for lp in layers), key=lambda d: str(d["layer"]))
    if pruning:
        rows.append(sorted((p.to_dict() for p in pruning), key=lambda d: str(d["group"])))
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def earlier_evaluation(study: optuna.Study, key: str, number: int) -> FrozenTrial | None:
    """The first complete trial other than ``number`` that evaluated the plan ``key``
    itself (not by reuse), or None."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != number and t.user_attrs.get(PLAN_KEY_ATTR) == key and not is_repeat(t):
            return t
    return None


def n_distinct_finished(study: optuna.Study) -> int:
    """Finished (complete or pruned) trials that evaluated their plan themselves."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=_DONE) if not is_repeat(t))


def max_attempts(remaining: int) -> int:
    """Most trials a worker starts to finish ``remaining`` distinct ones: room for failed
    trials and for cheap repeats (a small space may hold fewer distinct plans than asked;
    the search then ends after this many attempts)."""
    return remaining + max(10, 3 * remaining)


class DistinctTrialsStopper:
    """Optuna callback: stop the study once it holds ``n_trials`` finished trials that
    evaluated their own plan (trials that reused an earlier result do not count).

    Args:
        n_trials: The study's total (>= 1).
    """

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if n_distinct_finished(study) >= self.n_trials:
            study.stop()
