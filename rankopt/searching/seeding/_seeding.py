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

from rankopt.budget import Budget
from rankopt.pruning import KEEP_FRACTIONS
from rankopt.searching.space._profile import SensitivityProfile
from rankopt.searching.space._proposal import WEIGHT_RANGE, Proposal
from rankopt.searching.space._space import SearchSpace
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
    lead = budget.leading()
    if lead in ("macs", "n_params"):
        wanted = budget.limits()[lead] / space.dense_costs()[lead]
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
        info = space.layer(name)
        if not get_method(method).supports_vbmf or get_method(method).bound_note(info):
            continue  # a layer too large for an exact spectrum gets no VBMF weight
        module = modules[name]
        assert isinstance(module, nn.Conv2d | nn.Linear)
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


def _capacity_weights(space: SearchSpace) -> dict[str, float]:
    """Weights from each layer's MACs per parameter: the layer that costs the fewest MACs per
    parameter (a low-resolution one) gets the top of the weight range, the one that costs the
    most (a high-resolution one) the bottom, log-linear in between.

    At a MACs budget, rank taken from a high-resolution layer buys the most rank elsewhere:
    after fine-tuning, a network keeps more accuracy with the capacity of its deep,
    low-resolution layers than the un-fine-tuned sensitivity says (a residual branch crushed
    to rank 1-2 recovers; its identity path carries the signal). Measured on resnet8 /
    mnist5k, the sensitivity seed's methods with these weights, after the final fine-tune
    (mean of 3 seeds): 0.967 vs 0.968 at 10 % of the MACs, 0.951 vs 0.945 at 7 %, 0.923 vs
    0.905 at 5 %.
    """
    per_param = {
        n: space.layer(n).macs / space.layer(n).n_params
        for n in space.choices
        if space.layer(n).n_params > 0 and space.layer(n).macs > 0
    }
    if not per_param:
        return {}
    low, high = (math.log(f(per_param.values())) for f in (min, max))
    if high - low < 1e-12:
        return {}
    w_low, w_high = (math.log(w) for w in WEIGHT_RANGE)
    return {
        n: math.exp(w_high - (math.log(v) - low) / (high - low) * (w_high - w_low))
        for n, v in per_param.items()
    }


def _allocated_score(
    space: SearchSpace,
    methods: Mapping[str, str],
    budget: Budget,
    sensitivity: SensitivityProfile,
) -> float:
    """Total sensitivity of the allocation over ``methods`` within ``budget`` (inf when it
    does not fit): the allocation's own objective, so it compares methods at the budget."""
    realised = space.allocate_methods({n: [m] for n, m in methods.items()}, {}, budget, sensitivity)
    if realised is None:
        return math.inf
    total = 0.0
    for lp in realised.layers:
        if lp.method != "keep":
            info = space.layer(lp.layer)
            macs = get_method(lp.method).macs(info, lp.ranks, lp.options)
            total += sensitivity.score(lp.layer, lp.method, macs)
    return total


def _method_order(
    space: SearchSpace,
    budget: Budget,
    sensitivity: SensitivityProfile,
    fallback: Mapping[str, str],
) -> list[str]:
    """Offered methods, the ones whose one-method allocation at the study's budget is least
    harmful first (total sensitivity of ``<method>_only``; layers that do not offer a method
    take ``fallback``'s). Measured on resnet8 / mnist5k: this order matches the order of the
    allocations' accuracy after the final fine-tune at 10 % and 5 % of the MACs, where the
    mean score at half a layer's MACs put channel SVD first and CP second."""
    offered = sorted({m for methods in space.choices.values() for m in methods})
    scores = {
        m: _allocated_score(
            space,
            {n: m if m in o else fallback[n] for n, o in space.choices.items()},
            budget,
            sensitivity,
        )
        for m in offered
        if any(m in sensitivity.points.get(n, {}) for n in space.choices)
    }
    return sorted(scores, key=lambda m: (scores[m], m))


def _uniform_channels(space: SearchSpace, fraction: float) -> dict[str, int]:
    """Each group's offered count nearest ``fraction`` of its channels."""
    return {
        g: min(counts, key=lambda n: (abs(n - fraction * counts[0]), -n))
        for g, counts in space.channel_choices.items()
    }


def _pruning_seeds(
    space: SearchSpace, budget: Budget, best: Mapping[str, str], target: float | None
) -> list[tuple[str, Proposal]]:
    """``prune_uniform`` and ``prune_mix`` (see :func:`seed_trials`); none without groups."""
    if not space.channel_choices:
        return []
    wanted = space.target_budget(Proposal(best, {}, target), budget)
    shares = KEEP_FRACTIONS[1:]
    chosen = len(shares) - 1  # the most pruned, when no share meets the budget alone
    for i, share in enumerate(shares):
        view = space.pruned(_uniform_channels(space, share))
        latency = view.latency.model_ms if view.latency is not None else None
        if wanted.fits(view.profile.macs, view.profile.n_params, latency):
            chosen = i
            break
    out = [
        (
            "prune_uniform",
            Proposal(best, {}, target, channels=_uniform_channels(space, shares[chosen])),
        )
    ]
    if chosen > 0:
        mix = _uniform_channels(space, shares[chosen - 1])
        out.append(("prune_mix", Proposal(best, {}, target, channels=mix)))
    return out


def seed_trials(
    space: SearchSpace,
    model: nn.Module,
    budget: Budget,
    sensitivity: SensitivityProfile,
    *,
    with_target: bool,
    max_seeds: int,
) -> list[Seed]:
    """Seeds for a study, in enqueue order; at most ``max_seeds``; a seed that realises the
    same plan as an earlier one is dropped.

    In this order (the few seed slots of a short study go to different families: which
    family fine-tunes best depends on the budget, and only the proxy can tell):

    - ``sensitivity``: the allocation over every method (weights 1): per layer the method
      and rank with the least sensitivity per unit of cost.
    - with channel pruning, ``prune_uniform``: every channel group keeps the same share of
      its channels (:data:`~rankopt.pruning.KEEP_FRACTIONS`), the largest whose pruned
      model meets the budget with every layer dense (torch-pruning's uniform recipe, L2
      importance); and ``prune_mix``: one share more channels, the rest of the budget
      allocated to decompositions as ``sensitivity`` does (:func:`_pruning_seeds`).
    - ``capacity``: the same methods, layers weighted by their MACs per parameter
      (:func:`_capacity_weights`): rank moves from high-resolution to low-resolution layers.
    - ``<method>_only`` for the method whose one-method allocation is least harmful at the
      budget (:func:`_method_order`).
    - ``uniform_tucker2``: Kim et al.'s method choice (Tucker-2 on kxk convs, SVD on 1x1
      convs; the methods with the highest ``vbmf_seed`` priority) at one rank fraction
      everywhere, the largest that fits (the classic uniform recipe).
    - ``uniform_<method>`` for that least harmful method.
    - ``vbmf``: Kim et al.'s methods, each layer's rank fraction proportional to its VBMF
      estimate (their recipe fitted into the budget).
    - then ``<method>_only`` and ``uniform_<method>`` for the other methods, least harmful
      first.

    Measured on resnet8 / mnist5k after the final fine-tune (3 epochs): at 10 % of the MACs
    ``cp_only`` 0.954, ``uniform_cp`` 0.953, ``sensitivity`` 0.943; at 5 %
    ``uniform_tucker2`` 0.915, ``sensitivity`` 0.913, ``cp_only`` 0.901.
    """
    if not space.choices or max_seeds <= 0:
        return []
    target = _target(space, budget, with_target)
    best = _best_methods(space, budget, sensitivity, target)
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
    order = _method_order(
        space, space.target_budget(Proposal(best, {}, target), budget), sensitivity, best
    )

    def only(method: str) -> tuple[str, Proposal]:
        methods = {n: method if method in o else best[n] for n, o in space.choices.items()}
        return f"{method}_only", Proposal(methods, {}, target)

    def uniform(method: str) -> tuple[str, Proposal]:
        methods = {n: method if method in o else kim[n] for n, o in space.choices.items()}
        return f"uniform_{method}", Proposal(methods, {}, target, "uniform")

    proposals: list[tuple[str, Proposal]] = [("sensitivity", Proposal(best, {}, target))]
    proposals += _pruning_seeds(space, budget, best, target)
    proposals.append(("capacity", Proposal(best, _capacity_weights(space), target)))
    if order:
        proposals.append(only(order[0]))
    proposals.append((f"uniform_{kim_method}", Proposal(kim, {}, target, "uniform")))
    if order:
        proposals.append(uniform(order[0]))
    proposals.append(("vbmf", Proposal(kim, _vbmf_weights(space, model, kim), target, "uniform")))
    for method in order[1:]:
        proposals += [only(method), uniform(method)]
    seeds: list[Seed] = []
    seen: list[Any] = []
    for name, proposal in proposals:
        # Two seeds whose parameters differ can realise the same plan (at 50 % of the MACs
        # the sensitivity allocation over every method may pick CP everywhere, as
        # ``cp_only`` does): a seed slot is too scarce to measure one plan twice.
        params = space.params_of(proposal)
        realised = space.realise(proposal, budget, sensitivity)
        if realised is None:  # e.g. a budget only pruning reaches: not a slot for a failure
            continue
        key = (realised.layers, realised.pruning)
        if key in seen:
            continue
        seen.append(key)
        seeds.append(Seed(name, params))
        if len(seeds) >= max_seeds:
            break
    return seeds
