"""What a search space can reach: its cheapest costs, and the budget check before any trial."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from rankopt.budget import Budget
from rankopt.errors import BudgetError
from rankopt.latency import get_runtime
from rankopt.searching.space._allocation import Candidate, resource

if TYPE_CHECKING:
    from rankopt.evaluators import ModelProfile
    from rankopt.latency import LatencyTable
    from rankopt.spaces import LayerInfo

__all__ = ["SearchSpace", "check_budget", "min_cost", "min_latency_ms"]


class SearchSpace(Protocol):
    """What the reach reads of a space (:class:`._space.SearchSpace`, which builds on this
    module)."""

    @property
    def profile(self) -> ModelProfile:
        """The dense model's profile."""

    @property
    def choices(self) -> Mapping[str, tuple[str, ...]]:
        """``layer -> offered methods`` of the searchable layers."""

    @property
    def latency(self) -> LatencyTable | None:
        """The per-layer latency table, when the budget has a latency."""

    def layer(self, name: str) -> LayerInfo:
        """The layer's info."""

    def candidates(self, layer: str, method: str) -> tuple[Candidate, ...]:
        """The layer's candidates with ``method``, cheapest first."""

    def keep(self, layer: str) -> Candidate:
        """The layer kept dense."""

    def dense_costs(self) -> dict[str, float]:
        """The dense model's cost per resource."""

    def most_pruned(self) -> SearchSpace:
        """The space with every channel group at its fewest channels (itself without)."""


def min_cost(space: SearchSpace) -> tuple[int, int]:
    """Smallest reachable ``(macs, n_params)``: each searchable layer at its cheapest
    candidate (taken separately for MACs and for parameters)."""
    macs = space.profile.macs
    n_params = space.profile.n_params
    for name, offered in space.choices.items():
        info = space.layer(name)
        cands = [c for m in offered for c in space.candidates(name, m)]
        macs += min([info.macs, *(c.macs for c in cands)]) - info.macs
        n_params += min([info.n_params, *(c.n_params for c in cands)]) - info.n_params
    return macs, n_params


def min_latency_ms(space: SearchSpace) -> dict[int, float]:
    """Smallest predicted whole-model latency per batch size (each layer at its fastest
    choice, ``keep`` included); empty without a latency table."""
    if space.latency is None:
        return {}
    out = {}
    dense = space.dense_costs()
    for b in space.latency.batch_sizes:
        key = f"latency_ms@{b}"
        total = dense[key]
        for name, offered in space.choices.items():
            keep = space.keep(name)
            cands = [keep, *(c for m in offered for c in space.candidates(name, m))]
            total += min(resource(c, key) for c in cands) - resource(keep, key)
        out[b] = total
    return out


def check_budget(space: SearchSpace, budget: Budget) -> None:
    """Reject a budget below the smallest reachable cost, with both numbers (with channel
    pruning, the cost of the most pruned model's cheapest plan).

    Raises:
        BudgetError: no configuration of this space meets ``budget``.
    """
    cheapest = space.most_pruned()
    min_macs, min_params = min_cost(cheapest)
    has_budget = budget.is_set
    if (
        not space.choices
        and cheapest is space
        and has_budget
        and not budget.fits(space.profile.macs, space.profile.n_params)
    ):
        raise BudgetError(
            "the model has no layer that can be decomposed into something cheaper (every "
            "Conv2d/Linear is ineligible or too small), so only the dense model "
            f"({space.profile.macs} macs, {space.profile.n_params} params) is "
            "reachable, and it does not meet the budget"
        )
    if budget.max_macs is not None and budget.max_macs < min_macs:
        raise BudgetError(
            f"max_macs = {budget.max_macs} is below the smallest reachable cost of "
            f"{min_macs} macs ({100 * min_macs / space.profile.macs:.1f}% of dense "
            f"{space.profile.macs}); raise the budget to at least {min_macs}"
        )
    if space.latency is not None:
        runtime = get_runtime(space.latency.runtime)
        lowest = min_latency_ms(cheapest)
        for b, ms in sorted(budget.latency_limits_ms().items()):
            if b in lowest and ms < lowest[b]:
                dense = space.dense_costs()[f"latency_ms@{b}"]
                raise BudgetError(
                    f"max_latency = {ms:.3g} ms at batch size {b} is below the smallest "
                    f"predicted latency of {lowest[b]:.3g} ms "
                    f"({100 * lowest[b] / dense:.1f}% of dense {dense:.3g} ms, measured on "
                    f"this machine, runtime {runtime.name!r}); raise the budget to at least "
                    f"{100 * lowest[b] / dense:.0f}%{runtime.unreachable_hint}"
                )
    if budget.max_params is not None and budget.max_params < min_params:
        raise BudgetError(
            f"max_params = {budget.max_params} is below the smallest reachable "
            f"{min_params} parameters ({100 * min_params / space.profile.n_params:.1f}% of "
            f"dense {space.profile.n_params}); raise the budget to at least {min_params}"
        )
