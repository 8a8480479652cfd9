"""Seed trials: the sensitivity allocation, the VBMF-weighted recipe, one-method allocations.

Every seed is a set of trial parameters of the search space (methods and weights), so a
seed's plan is what the objective realises from its parameters, and the sampler learns
from seeds like from any other trial. Seeds are at most a quarter of the study's trials.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from rankopt.search._budget import Budget
from rankopt.search._sensitivity import SensitivityProfile
from rankopt.search._space import WEIGHT_RANGE, Proposal, SearchSpace
from rankopt.spaces import get_method, vbmf_ranks

__all__ = ["Seed", "seed_trials"]

NO_BUDGET_TARGET = 0.5
"""Fraction of dense the seeds allocate when the study has no budget."""


@dataclass(frozen=True)
class Seed:
    """One enqueued trial.

    Attributes:
        name: Label stored in the trial's ``user_attrs["seed"]`` (``"sensitivity"``, ...).
        params: Trial parameters.
    """

    name: str
    params: Mapping[str, Any]


def _target(space: SearchSpace, budget: Budget, with_target: bool) -> float | None:
    if not with_target:
        return None
    low, high = space.target_range(budget)
    if budget.max_macs is not None:
        wanted = budget.max_macs / space.profile.macs
    elif budget.max_params is not None:
        wanted = budget.max_params / space.profile.n_params
    else:
        wanted = NO_BUDGET_TARGET
    return min(high, max(low, wanted))


def _best_methods(
    space: SearchSpace, budget: Budget, sensitivity: SensitivityProfile, target: float | None
) -> dict[str, str]:
    """Per layer, the method the allocation over every offered method picks (for a layer it
    keeps dense: the method whose costliest useful point scores lowest)."""
    proposal = Proposal(dict.fromkeys(space.choices, ""), {}, target)
    realised = space.allocate_methods(
        space.choices, {}, space.target_budget(proposal, budget), sensitivity
    )
    picked = {lp.layer: lp.method for lp in realised.layers} if realised else {}
    out = {}
    for name, offered in space.choices.items():
        method = picked.get(name, "keep")
        if method == "keep" or method not in offered:
            measured = sensitivity.points.get(name, {})
            # the method whose costliest useful point scores lowest
            last = [measured[m][-1][1] if m in measured else math.inf for m in offered]
            method = offered[last.index(min(last))]
        out[name] = method
    return out


def _vbmf_weights(
    space: SearchSpace, model: nn.Module, methods: Mapping[str, str]
) -> dict[str, float]:
    """Weights from VBMF: a layer whose VBMF rank is a larger share of its full rank
    carries more signal above the noise and gets a larger weight (relative to the median,
    clipped to the weight range)."""
    modules = dict(model.named_modules())
    fractions: dict[str, float] = {}
    for name, method in methods.items():
        if not get_method(method).supports_vbmf:
            continue
        module = modules[name]
        assert isinstance(module, nn.Conv2d | nn.Linear)
        info = space.layer(name)
        full = get_method(method).rank_space(info, get_method(method).default_options(info))
        ranks = vbmf_ranks(module, method)
        parts = [max(1, ranks[k]) / full[k] for k in full]
        fractions[name] = math.exp(sum(math.log(p) for p in parts) / len(parts))
    if not fractions:
        return {}
    mid = statistics.median(fractions.values())
    return {
        name: min(WEIGHT_RANGE[1], max(WEIGHT_RANGE[0], f / mid)) for name, f in fractions.items()
    }


def _method_order(space: SearchSpace, sensitivity: SensitivityProfile) -> list[str]:
    """Offered methods, the ones the profile finds least harmful first (mean over layers of
    the score of the point nearest half the layer's MACs)."""
    scores: dict[str, list[float]] = {}
    for name, offered in space.choices.items():
        half = space.layer(name).macs // 2
        for m in offered:
            if m in sensitivity.points.get(name, {}):
                scores.setdefault(m, []).append(sensitivity.score(name, m, half))
    return sorted(scores, key=lambda m: (statistics.fmean(scores[m]), m))


def seed_trials(
    space: SearchSpace,
    model: nn.Module,
    budget: Budget,
    sensitivity: SensitivityProfile,
    *,
    with_target: bool,
    max_seeds: int,
) -> list[Seed]:
    """Seeds for a study, in enqueue order; at most ``max_seeds``, duplicates dropped.

    - ``sensitivity``: the allocation over every method (weights 1): per layer the method
      and rank with the least sensitivity per unit of cost.
    - ``uniform_tucker2``: Kim et al.'s method choice (Tucker-2 on kxk convs, SVD on 1x1
      convs; the methods with the highest ``vbmf_seed`` priority) at one rank fraction
      everywhere, the largest that fits (the classic uniform recipe).
    - ``vbmf``: the same methods, each layer's rank fraction proportional to its VBMF
      estimate (Kim et al.'s recipe fitted into the budget).
    - ``uniform_<method>``: one method everywhere it is offered, one rank fraction, the
      methods the sensitivity profile finds least harmful first.
    - ``<method>_only``: one method everywhere, sensitivity allocation.
    """
    if not space.choices or max_seeds <= 0:
        return []
    target = _target(space, budget, with_target)
    best = _best_methods(space, budget, sensitivity, target)
    proposals: list[tuple[str, Proposal]] = [("sensitivity", Proposal(best, {}, target))]
    kim = {
        name: max(offered, key=lambda m: get_method(m).vbmf_seed)
        if any(get_method(m).vbmf_seed for m in offered)
        else best[name]
        for name, offered in space.choices.items()
    }
    kim_method = max(
        (m for methods in space.choices.values() for m in methods),
        key=lambda m: get_method(m).vbmf_seed,
    )
    proposals.append((f"uniform_{kim_method}", Proposal(kim, {}, target, "uniform")))
    vbmf_weights = _vbmf_weights(space, model, kim)
    proposals.append(("vbmf", Proposal(kim, vbmf_weights, target, "uniform")))
    order = _method_order(space, sensitivity)
    for method in order:
        uniform = {
            n: method if method in offered else kim[n] for n, offered in space.choices.items()
        }
        proposals.append((f"uniform_{method}", Proposal(uniform, {}, target, "uniform")))
    for method in order:
        only = {n: method if method in offered else best[n] for n, offered in space.choices.items()}
        proposals.append((f"{method}_only", Proposal(only, {}, target)))
    seeds: list[Seed] = []
    seen: list[dict[str, Any]] = []
    for name, proposal in proposals:
        params = space.params_of(proposal)
        if params in seen:
            continue
        seen.append(params)
        seeds.append(Seed(name, params))
        if len(seeds) >= max_seeds:
            break
    return seeds
