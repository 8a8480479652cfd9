"""Budget allocation: choose one candidate per layer so that the model fits a budget exactly.

Each layer offers candidates (a method at one point of its rank path, or ``keep``) with a
cost (MACs, parameters) and a sensitivity score (how much the network's output degrades when
only this layer is decomposed so, see :mod:`rankopt.search._sensitivity`). The allocation
minimises ``sum_L w_L * score_L`` subject to the budget: a Lagrangian relaxation (each layer
independently minimises ``w * score + lam * cost``; ``lam`` bisected until the total fits)
followed by a greedy fill of the slack (the upgrade with the best score saved per unit of
cost, repeatedly). It is deterministic: the same candidates, weights and budget give the same
choice, so a trial's realised plan is a function of its sampled parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Candidate", "allocate"]


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
    """

    method: str
    ranks: Mapping[str, int]
    options: Mapping[str, Any] = field(default_factory=dict)
    macs: int = 0
    n_params: int = 0
    score: float = 0.0


def _norm_cost(c: Candidate, limits: Mapping[str, float]) -> float:
    """Cost of a candidate in units of the budget (sum over the budgeted resources)."""
    total = 0.0
    if "macs" in limits:
        total += c.macs / limits["macs"]
    if "n_params" in limits:
        total += c.n_params / limits["n_params"]
    return total


def _fits(totals: Mapping[str, float], limits: Mapping[str, float]) -> bool:
    return all(totals[k] <= limits[k] for k in limits)


def _totals(chosen: Sequence[Candidate], base: Mapping[str, int]) -> dict[str, float]:
    return {
        "macs": base["macs"] + sum(c.macs for c in chosen),
        "n_params": base["n_params"] + sum(c.n_params for c in chosen),
    }


def allocate(
    candidates: Sequence[Sequence[Candidate]],
    weights: Sequence[float],
    *,
    max_macs: float | None,
    max_params: float | None,
    fixed_macs: int,
    fixed_params: int,
) -> list[Candidate] | None:
    """One candidate per layer minimising the weighted score within the budget.

    Args:
        candidates: Per layer, its candidates (at least one; the cheapest must exist).
        weights: Per layer, the factor on its scores (> 0).
        max_macs: Budget on the whole model's MACs, or None.
        max_params: Budget on the whole model's parameters, or None.
        fixed_macs: MACs of everything the allocation does not choose (other layers, ...).
        fixed_params: Parameters of everything the allocation does not choose.

    Returns:
        The chosen candidate per layer, or None when even the cheapest choice of every layer
        does not fit. Without any budget every layer gets its lowest weighted score (ties:
        the cheaper).
    """
    limits: dict[str, float] = {}
    if max_macs is not None:
        limits["macs"] = float(max_macs)
    if max_params is not None:
        limits["n_params"] = float(max_params)
    base = {"macs": fixed_macs, "n_params": fixed_params}
    ordered = [
        sorted(cands, key=lambda c: (_norm_cost(c, limits), c.macs, c.n_params))
        for cands in candidates
    ]

    def pick(lam: float) -> list[Candidate]:
        out = []
        for cands, w in zip(ordered, weights, strict=True):
            values = [w * c.score + lam * _norm_cost(c, limits) for c in cands]
            out.append(cands[values.index(min(values))])  # ties: the cheaper
        return out

    if not limits:
        return pick(0.0)
    cheapest = [cands[0] for cands in ordered]
    if not _fits(_totals(cheapest, base), limits):
        return None
    chosen = pick(0.0)
    if not _fits(_totals(chosen, base), limits):
        # Total cost falls (weakly) as lam grows: bisect lam geometrically for the smallest
        # price that fits. Above 1e18 the scores no longer matter: take the cheapest.
        lo, hi = 1e-12, 1e-12
        while not _fits(_totals(pick(hi), base), limits) and hi < 1e18:
            lo, hi = hi, hi * 8.0
        if not _fits(_totals(pick(hi), base), limits):
            chosen = cheapest
        else:
            for _ in range(100):
                if hi / lo < 1 + 1e-9:
                    break
                mid = math.sqrt(lo * hi)
                if _fits(_totals(pick(mid), base), limits):
                    hi = mid
                else:
                    lo = mid
            chosen = pick(hi)
    return _fill(ordered, list(chosen), weights, limits, base)


def _fill(
    ordered: Sequence[Sequence[Candidate]],
    chosen: list[Candidate],
    weights: Sequence[float],
    limits: Mapping[str, float],
    base: Mapping[str, int],
) -> list[Candidate]:
    """Spend the slack the Lagrangian left: repeatedly take the single-layer change that
    lowers the weighted score most per unit of added cost and still fits."""
    while True:
        totals = _totals(chosen, base)
        best: tuple[float, int, Candidate] | None = None
        for i, (cands, w) in enumerate(zip(ordered, weights, strict=True)):
            now = chosen[i]
            for c in cands:
                gain = w * (now.score - c.score)
                if gain <= 0:
                    continue
                trial = dict(totals)
                trial["macs"] += c.macs - now.macs
                trial["n_params"] += c.n_params - now.n_params
                if not _fits(trial, limits):
                    continue
                extra = _norm_cost(c, limits) - _norm_cost(now, limits)
                ratio = gain / extra if extra > 0 else math.inf
                if best is None or ratio > best[0]:
                    best = (ratio, i, c)
        if best is None:
            return chosen
        chosen[best[1]] = best[2]
