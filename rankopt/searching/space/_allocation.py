"""Budget allocation: choose one candidate per layer so that the model fits a budget exactly.

Each layer offers candidates (a method at one point of its rank path, or ``keep``) with a
cost (MACs, parameters) and a sensitivity score (how much the network's output degrades when
only this layer is decomposed so, see :mod:`rankopt.searching.objective._sensitivity`). The
allocation minimises ``sum_L w_L * score_L`` subject to the budget: a Lagrangian relaxation
(each layer independently minimises ``w * score + lam * cost``; ``lam`` bisected until the
total fits) followed by a greedy fill of the slack (the upgrade with the best score saved per
unit of cost, repeatedly). It is deterministic: the same candidates, weights and budget give
the same choice, so a trial's realised plan is a function of its sampled parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Candidate", "allocate", "allocate_uniform", "resource"]


@dataclass(frozen=True)
class Candidate:
    """One choice for one layer.

    Attributes:
        method: Method name (``keep`` for the dense layer).
        ranks: Rank per rank name (empty for ``keep``).
        options: Method options.
        macs: Multiply-accumulates per image of the layer built so.
        n_params: Parameters of the layer built so.
        score: Sensitivity (output degradation, >= 0; 0 for ``keep``).
        latency_ms: Batch size -> predicted latency of the layer built so (from the
            latency table; empty without a latency budget).
        fraction: The largest of ``rank / full rank`` over the rank names (1 for ``keep``).
    """

    method: str
    ranks: Mapping[str, int]
    options: Mapping[str, Any] = field(default_factory=dict)
    macs: int = 0
    n_params: int = 0
    score: float = 0.0
    latency_ms: Mapping[int, float] = field(default_factory=dict)
    fraction: float = 1.0


def resource(c: Candidate, key: str) -> float:
    """A candidate's cost in one resource: ``"macs"``, ``"n_params"`` or
    ``"latency_ms@<batch size>"``."""
    if key == "macs":
        return float(c.macs)
    if key == "n_params":
        return float(c.n_params)
    return float(c.latency_ms[int(key.split("@", 1)[1])])


def _norm_cost(c: Candidate, limits: Mapping[str, float]) -> float:
    """Cost of a candidate in units of the budget (sum over the budgeted resources)."""
    return sum(resource(c, key) / limit for key, limit in limits.items())


def _fits(totals: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    return all(totals[k] <= limits[k] * (1 + 1e-12) for k in limits)


def _totals(
    chosen: Sequence[Candidate], base: Mapping[str, float], limits: Mapping[str, float]
) -> dict[str, float]:
    return {k: base.get(k, 0.0) + sum(resource(c, k) for c in chosen) for k in limits}


def allocate(
    candidates: Sequence[Sequence[Candidate]],
    weights: Sequence[float],
    limits: Mapping[str, float],
    fixed: Mapping[str, float],
) -> list[Candidate] | None:
    """One candidate per layer minimising the weighted score within the budget.

    Args:
        candidates: Per layer, its candidates (at least one).
        weights: Per layer, the factor on its scores (> 0).
        limits: Budget of the whole model per resource (see :func:`resource`); empty for
            no budget.
        fixed: Cost per resource of everything the allocation does not choose (the other
            layers, the rest of the network).

    Returns:
        The chosen candidate per layer, or None when even the cheapest choice of every layer
        does not fit. Without any budget every layer gets its lowest weighted score (ties:
        the cheaper).
    """
    base = dict(fixed)
    ordered = [
        sorted(cands, key=lambda c: (_norm_cost(c, limits), c.macs, c.n_params))
        for cands in candidates
    ]

    # (weighted score, normalised cost) per candidate, once: pick() runs ~100 times
    terms = [
        [(w * c.score, _norm_cost(c, limits)) for c in cands]
        for cands, w in zip(ordered, weights, strict=True)
    ]

    def pick(lam: float) -> list[Candidate]:
        out = []
        for cands, layer_terms in zip(ordered, terms, strict=True):
            values = [score + lam * cost for score, cost in layer_terms]
            out.append(cands[values.index(min(values))])  # ties: the cheaper
        return out

    def fits(chosen: Sequence[Candidate]) -> bool:
        return _fits(_totals(chosen, base, limits), limits)

    if not limits:
        return pick(0.0)
    cheapest = [cands[0] for cands in ordered]
    if not fits(cheapest):
        # the normalised order need not be cheapest in every resource: try each one's minimum
        per_resource = [[_cheapest(cands, k) for cands in ordered] for k in limits]
        cheapest = next((choice for choice in per_resource if fits(choice)), cheapest)
        if not fits(cheapest):
            return None
    chosen = pick(0.0)
    if not fits(chosen):
        # Total cost falls (weakly) as lam grows: bisect lam geometrically for the smallest
        # price that fits. Above 1e18 the scores no longer matter: take the cheapest.
        lo, hi = 1e-12, 1e-12
        while not fits(pick(hi)) and hi < 1e18:
            lo, hi = hi, hi * 8.0
        if not fits(pick(hi)):
            chosen = cheapest
        else:
            for _ in range(100):
                if hi / lo < 1 + 1e-9:
                    break
                mid = math.sqrt(lo * hi)
                if fits(pick(mid)):
                    hi = mid
                else:
                    lo = mid
            chosen = pick(hi)
    return _fill(ordered, list(chosen), weights, limits, base)


def allocate_uniform(
    candidates: Sequence[Sequence[Candidate]],
    weights: Sequence[float],
    limits: Mapping[str, float],
    fixed: Mapping[str, float],
) -> list[Candidate] | None:
    """One rank fraction ``f`` for every layer, times the layer's weight: each layer takes
    its costliest candidate whose rank fraction is at most ``min(1, f * weight)`` (its
    cheapest when none is), with the largest ``f`` that fits the budget (bisection).

    Without layer weights this is the classic uniform-rank recipe; the weights let a layer
    keep relatively more (or less) rank. ``keep`` is never chosen.

    Returns:
        The chosen candidate per layer, or None when even the cheapest ones do not fit.
    """
    ordered = [
        sorted((c for c in cands if c.method != "keep"), key=lambda c: (c.fraction, c.macs))
        for cands in candidates
    ]
    if any(not cands for cands in ordered):
        return None

    def pick(f: float) -> list[Candidate]:
        out = []
        for cands, w in zip(ordered, weights, strict=True):
            limit = min(1.0, f * w) + 1e-12
            within = [c for c in cands if c.fraction <= limit]
            out.append(within[-1] if within else cands[0])
        return out

    def fits(chosen: Sequence[Candidate]) -> bool:
        return _fits(_totals(chosen, fixed, limits), limits)

    high = 1.0 / min(weights)
    if not limits or fits(pick(high)):
        return pick(high)
    if not fits(pick(0.0)):
        return None
    lo, hi = 0.0, high
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if fits(pick(mid)):
            lo = mid
        else:
            hi = mid
    return pick(lo)


def _cheapest(cands: Sequence[Candidate], key: str) -> Candidate:
    costs = [resource(c, key) for c in cands]
    return cands[costs.index(min(costs))]


def _fill(
    ordered: Sequence[Sequence[Candidate]],
    chosen: list[Candidate],
    weights: Sequence[float],
    limits: Mapping[str, float],
    base: Mapping[str, float],
) -> list[Candidate]:
    """Spend the slack the Lagrangian left: repeatedly take the single-layer change that
    lowers the weighted score most per unit of added cost and still fits."""
    while True:
        totals = _totals(chosen, base, limits)
        best: tuple[float, int, Candidate] | None = None
        for i, (cands, w) in enumerate(zip(ordered, weights, strict=True)):
            now = chosen[i]
            for c in cands:
                gain = w * (now.score - c.score)
                if gain <= 0:
                    continue
                trial = {k: totals[k] + resource(c, k) - resource(now, k) for k in limits}
                if not _fits(trial, limits):
                    continue
                extra = _norm_cost(c, limits) - _norm_cost(now, limits)
                ratio = gain / extra if extra > 0 else math.inf
                if best is None or ratio > best[0]:
                    best = (ratio, i, c)
        if best is None:
            return chosen
        chosen[best[1]] = best[2]
