"""Points spaced geometrically along an ascending cost list (light: no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["geometric_picks"]


def geometric_picks(costs: Sequence[float], n_points: int, *, fill: bool = False) -> list[int]:
    """Indices of up to ``n_points`` entries of the ascending, positive ``costs``, nearest
    to targets spaced geometrically from the first cost to the last (both included).

    Args:
        costs: Ascending costs (> 0), e.g. MACs.
        n_points: Targets (>= 2).
        fill: When a target's nearest entry is already picked, take the nearest one not
            picked yet (``min(n_points, len(costs))`` indices in all); without it the
            target is dropped.

    Returns:
        Sorted indices into ``costs``; all of them when there are at most ``n_points``.
    """
    if len(costs) <= n_points:
        return list(range(len(costs)))
    lo, hi = math.log(costs[0]), math.log(costs[-1])
    picked: list[int] = []
    for k in range(n_points):
        target = lo + (hi - lo) * k / (n_points - 1)
        pool = [i for i in range(len(costs)) if not (fill and i in picked)]
        best = min(pool, key=lambda i: (abs(math.log(costs[i]) - target), i))
        if best not in picked:
            picked.append(best)
    return sorted(picked)
