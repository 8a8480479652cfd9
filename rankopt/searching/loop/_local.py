"""Local moves around the best trials, alternating with a model-based sampler.

A study of a few dozen trials over ~20 parameters (a method and a weight per layer) gives TPE
too few points to model: on resnet8 / mnist5k at 10 % of the MACs, after the 4 seed trials
all 12 TPE trials scored below every seed (proxy accuracy 0.870-0.882 vs 0.888-0.910), so
the study's best plan was a seed. Perturbing the best trials instead (3 layers' weights
times ``exp(N(0, 0.7))``, now and then another method for one of them) found plans above
every seed in the same number of trials (proxy 0.912-0.922; after the final fine-tune 0.954-0.959 vs
the best seed's 0.956). :class:`LocalMovesSampler` alternates the two: local moves exploit
what the seeds found, the wrapped sampler keeps exploring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from rankopt.errors import SettingsError
from rankopt.storage import best_first

__all__ = ["LOCAL_SHARE", "LocalMovesSampler", "incumbents"]

LOCAL_SHARE = 0.75
"""Share of the trials after the start-up ones that are local moves."""
N_MOVED = 3
"""Parameters changed per local move."""
LOG_STEP = 0.7
"""Standard deviation of a moved number's change, in log space (float and int params)."""
SWITCH_PROBABILITY = 0.2
"""Chance that a moved categorical parameter (a layer's method) takes another value; a
moved channel count (ordered numbers) always steps to a neighbouring count."""


def incumbents(trials: Sequence[FrozenTrial], k: int) -> list[FrozenTrial]:
    """The ``k`` best complete trials that meet their constraints, ranked as the search
    recommends them (:func:`rankopt.storage._attrs.best_first`: the lowest validation loss)."""
    feasible = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and "accuracy" in t.user_attrs
        and all(float(c) <= 0 for c in t.user_attrs.get("constraint", [0.0]))
    ]
    return best_first(feasible)[:k]


class LocalMovesSampler(optuna.samplers.BaseSampler):
    """``base`` for the start-up trials and a share of the later ones; the rest are local
    moves: one of the two best trials (:func:`incumbents`) with :data:`N_MOVED` parameters moved.

    Args:
        base: The sampler that explores (TPE for the default search).
        n_startup_trials: Finished trials before any local move (the seed trials).
        seed: Seed of the moves' random numbers.
        local_share: Share of the later trials that are local moves.
    """

    def __init__(
        self,
        base: optuna.samplers.BaseSampler,
        *,
        n_startup_trials: int,
        seed: int | None = None,
        local_share: float = LOCAL_SHARE,
    ) -> None:
        if not 0.0 <= local_share <= 1.0:
            raise SettingsError(f"local_share={local_share} must be in [0, 1]")
        self._base = base
        self._n_startup = n_startup_trials
        self._share = local_share
        self._rng = np.random.RandomState(seed)

    @property
    def base(self) -> optuna.samplers.BaseSampler:
        """The wrapped sampler."""
        return self._base

    def reseed_rng(self) -> None:
        """Reseed this sampler and the wrapped one (Optuna does it per worker thread)."""
        self._rng.seed()
        self._base.reseed_rng()

    def _is_local(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if len(finished) < self._n_startup:
            return False
        # Deterministic in the trial number: trial n is local when the running count of
        # local trials at share s steps up at n (s = 0.75: three trials of every four, the
        # first one after the start-up trials local).
        after = trial.number - self._n_startup
        return math.ceil((after + 1) * self._share) > math.ceil(after * self._share)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Every parameter all complete trials share, when this trial is a local move; the
        wrapped sampler's otherwise."""
        if self._is_local(study, trial):
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            return optuna.search_space.intersection_search_space(done)
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        """A local move's parameters, or the wrapped sampler's relative sample."""
        if not self._is_local(study, trial):
            return self._base.sample_relative(study, trial, search_space)
        tops = incumbents(study.get_trials(deepcopy=False), 2)
        if not tops or not search_space:
            return {}
        start = tops[int(self._rng.randint(len(tops)))]
        params = {n: start.params[n] for n in search_space if n in start.params}
        movable = sorted(params)
        picked = self._rng.choice(len(movable), size=min(N_MOVED, len(movable)), replace=False)
        for i in picked:
            name = movable[int(i)]
            params[name] = self._move(params[name], search_space[name])
        return params

    def _move(self, value: Any, dist: BaseDistribution) -> Any:
        if isinstance(dist, CategoricalDistribution) and _ordered(dist.choices):
            # a channel count: always one step to a neighbouring count
            i = dist.choices.index(value)
            steps = [j for j in (i - 1, i + 1) if 0 <= j < len(dist.choices)]
            return dist.choices[steps[int(self._rng.randint(len(steps)))]] if steps else value
        if isinstance(dist, CategoricalDistribution):
            others = [c for c in dist.choices if c != value]
            if others and self._rng.rand() < SWITCH_PROBABILITY:
                return others[int(self._rng.randint(len(others)))]
            return value
        if isinstance(dist, FloatDistribution | IntDistribution):
            low, high = dist.low, dist.high
            if dist.log or low > 0:
                moved = float(value) * math.exp(self._rng.normal(0.0, LOG_STEP))
            else:
                moved = float(value) + self._rng.normal(0.0, LOG_STEP) * (high - low) / 4
            moved = min(high, max(low, moved))
            if isinstance(dist, IntDistribution):
                return round(moved)
            return moved
        return value

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """The wrapped sampler's (parameters outside the relative search space)."""
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Passed to the wrapped sampler."""
        self._base.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        """Passed to the wrapped sampler."""
        self._base.after_trial(study, trial, state, values)


def _ordered(choices: Sequence[Any]) -> bool:
    """Whether categorical choices are numbers in order (a channel group's counts)."""
    nums = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
    return len(nums) == len(choices) > 1 and (nums == sorted(nums) or nums == sorted(nums)[::-1])
