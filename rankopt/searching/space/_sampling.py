"""How a trial samples the space: the parameters and their inverse (for seeding).

:class:`Sampling` is the sampling half of :class:`~rankopt.searching.space._space.SearchSpace`
(which inherits it); it reads the space's ``choices``, ``channel_choices`` and costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna

from rankopt.budget import Budget
from rankopt.searching.space._proposal import ALLOCATIONS, WEIGHT_RANGE, Proposal
from rankopt.searching.space._reach import SearchSpace as Reachable
from rankopt.searching.space._reach import min_cost, min_latency_ms

if TYPE_CHECKING:
    from rankopt.evaluators import ModelProfile

__all__ = ["Sampling"]


class Sampling:
    """Trial parameters of a search space (see :mod:`rankopt.searching.space._space`)."""

    choices: dict[str, tuple[str, ...]]
    channel_choices: dict[str, tuple[int, ...]]
    profile: ModelProfile

    if TYPE_CHECKING:  # SearchSpace's, which inherits this class

        def most_pruned(self) -> Reachable: ...

        def dense_costs(self) -> dict[str, float]: ...

    @staticmethod
    def param_name(layer: str, *parts: str) -> str:
        """Stable parameter name, e.g. ``"layer1.0.conv1/method"``."""
        return "/".join((layer, *parts))

    def needs_target(self, budget: Budget, repair: str) -> bool:
        """Whether trials sample the ``target`` fraction (no budget, or constraint mode)."""
        return repair == "constraint" or not budget.is_set

    def target_range(self, budget: Budget) -> tuple[float, float]:
        """Range of the ``target`` parameter: the cheapest reachable fraction to 1."""
        macs, n_params = min_cost(self.most_pruned())
        lead = budget.leading()
        if lead == "n_params":
            return min(1.0, n_params / self.profile.n_params), 1.0
        if lead == "latency_ms":
            low = min_latency_ms(self.most_pruned())
            dense = self.dense_costs()
            return min(1.0, max(low[b] / dense[f"latency_ms@{b}"] for b in low)), 1.0
        return min(1.0, macs / self.profile.macs), 1.0

    def suggest(self, trial: optuna.Trial, *, with_target: bool, budget: Budget) -> Proposal:
        """Sample a :class:`Proposal` from ``trial``."""
        methods: dict[str, str] = {}
        weights: dict[str, float] = {}
        for name, offered in self.choices.items():
            methods[name] = str(trial.suggest_categorical(self.param_name(name, "method"), offered))
            weights[name] = trial.suggest_float(
                self.param_name(name, "weight"), *WEIGHT_RANGE, log=True
            )
        target = None
        if with_target:
            low, high = self.target_range(budget)
            target = trial.suggest_float("target", low, high, log=True) if low < high else 1.0
        allocation = str(trial.suggest_categorical("allocation", ALLOCATIONS))
        channels = {
            group: int(trial.suggest_categorical(self.param_name(group, "channels"), counts))
            for group, counts in self.channel_choices.items()
        }
        return Proposal(methods, weights, target, allocation, channels)

    def params_of(self, proposal: Proposal) -> dict[str, Any]:
        """Trial parameters that make :meth:`suggest` return ``proposal`` (for seeding)."""
        params: dict[str, Any] = {}
        for name in self.choices:
            params[self.param_name(name, "method")] = proposal.methods[name]
            w = float(proposal.weights.get(name, 1.0))
            params[self.param_name(name, "weight")] = min(WEIGHT_RANGE[1], max(WEIGHT_RANGE[0], w))
        if proposal.target is not None:
            params["target"] = proposal.target
        params["allocation"] = proposal.allocation
        for group, counts in self.channel_choices.items():
            params[self.param_name(group, "channels")] = int(
                proposal.channels.get(group, counts[0])
            )
        return params

    def proposal_from_params(self, params: Mapping[str, Any]) -> Proposal:
        """The :class:`Proposal` a trial with ``params`` samples (inverse of
        :meth:`params_of`)."""
        methods = {n: str(params[self.param_name(n, "method")]) for n in self.choices}
        weights = {n: float(params[self.param_name(n, "weight")]) for n in self.choices}
        target = params.get("target")
        allocation = str(params.get("allocation", "sensitivity"))
        channels = {
            g: int(params.get(self.param_name(g, "channels"), counts[0]))
            for g, counts in self.channel_choices.items()
        }
        target_f = None if target is None else float(target)
        return Proposal(methods, weights, target_f, allocation, channels)
