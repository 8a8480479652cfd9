"""Rounding ranks to hardware-friendly multiples."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

__all__ = ["geometric_picks", "ranks_at_fraction", "round_rank", "round_ranks"]

RoundMode = Literal["nearest", "down", "up"]


def round_rank(rank: int, multiple: int, full: int, mode: RoundMode = "nearest") -> int:
    """Round one rank to a multiple of ``multiple``, within ``[1, full]``.

    ``full`` itself is always allowed (it is the dense layer's own shape), so a rank that
    would round above ``full`` becomes ``full``, and a rank that would round to 0 becomes
    ``min(multiple, full)``. Ties of ``"nearest"`` go up.

    Args:
        rank: The rank to round (any int; clamped to ``[1, full]`` first).
        multiple: The multiple (>= 1; 1 leaves the rank as is).
        full: The largest allowed rank (>= 1).
        mode: ``"nearest"``, ``"down"`` (never above ``rank`` unless that is < 1 multiple)
            or ``"up"``.

    Returns:
        The rounded rank, an int in ``[1, full]``.

    Raises:
        ValueError: ``multiple`` < 1, ``full`` < 1 or an unknown ``mode``.
    """
    if multiple < 1 or full < 1:
        raise ValueError(f"multiple={multiple} and full={full} must both be >= 1")
    if mode not in ("nearest", "down", "up"):
        raise ValueError(f"mode={mode!r} must be one of 'nearest', 'down', 'up'")
    rank = min(max(int(rank), 1), full)
    if mode == "down":
        steps = rank // multiple
    elif mode == "up":
        steps = -(-rank // multiple)
    else:
        steps = (2 * rank + multiple) // (2 * multiple)
    rounded = steps * multiple
    if rounded > full:
        return full
    if rounded < 1:
        return min(multiple, full)
    return rounded


def round_ranks(
    ranks: Mapping[str, int],
    multiple: int,
    full: Mapping[str, int],
    mode: RoundMode = "nearest",
) -> dict[str, int]:
    """Round every rank of a layer with :func:`round_rank`.

    Args:
        ranks: Rank per rank name (``{"r_in": 13, "r_out": 30}``).
        multiple: The multiple (>= 1), e.g. 8 for SIMD-friendly channel counts.
        full: Largest rank per rank name (``method.rank_space(layer)``).
        mode: ``"nearest"``, ``"down"`` or ``"up"``.

    Returns:
        A new dict with the same keys, each value in ``[1, full[name]]``.

    Raises:
        ValueError: bad ``multiple`` / ``mode``, or a rank name missing from ``full``.
    """
    missing = sorted(set(ranks) - set(full))
    if missing:
        raise ValueError(f"ranks {missing} have no full rank; known are {sorted(full)}")
    return {name: round_rank(r, multiple, full[name], mode) for name, r in ranks.items()}


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


def ranks_at_fraction(full: Mapping[str, int], fraction: float) -> dict[str, int]:
    """Every rank at ``fraction`` of its full value, rounded, within ``[1, full]`` (the rank
    names of one method tied to one fraction)."""
    return {k: max(1, min(v, round(fraction * v))) for k, v in full.items()}
