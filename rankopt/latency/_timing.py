"""Interleaved timing of several runners on one input (light: no torch at import).

Shared by the runtimes (:mod:`._runtimes`) and the timing primitives of the table
(:mod:`._grid`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["Runner", "paired_medians_ms", "time_runners_ms"]

Runner = Callable[["torch.Tensor"], Any]
"""One forward pass of a prepared model on a CPU float32 batch."""


def time_runners_ms(
    runners: Sequence[Runner],
    x: torch.Tensor,
    *,
    n_warmup: int = 3,
    n_runs: int = 15,
    paired: bool = False,
) -> list[float]:
    """Median time of one call of each runner on ``x``, measured interleaved, in ms.

    Each round calls every runner once, the order rotated each round, so slow drifts of a
    shared machine hit all of them alike. ``paired``: the others relative to the first
    runner round by round (:func:`paired_medians_ms`).
    """
    times: list[list[float]] = [[] for _ in runners]
    n = len(runners)
    for _ in range(n_warmup):
        for run in runners:
            run(x)
    for round_ in range(n_runs):
        for k in range(n):
            i = (k + round_) % n
            start = time.perf_counter()
            runners[i](x)
            times[i].append((time.perf_counter() - start) * 1000.0)
    if paired:
        return paired_medians_ms(times)
    return [float(statistics.median(t)) for t in times]


def paired_medians_ms(times: Sequence[Sequence[float]]) -> list[float]:
    """Per-variant times from interleaved rounds, each relative to the first variant.

    ``times[i][k]`` is variant ``i``'s time in round ``k``. Returns the first variant's
    median, then for each other variant that median plus the median over rounds of its
    difference to the first variant **in the same round**: a round the shared machine
    slowed down moves both, so the difference cancels it. On resnet8 at batch 64 (11 ms, a
    layer's change 0.5-2 ms) the median of per-variant medians put one layer's saving at
    0.99 ms in one table build and 1.27 ms in a repeat; paired, the builds agree within
    about 0.1 ms.
    """
    base = float(statistics.median(times[0]))
    out = [base]
    for t in times[1:]:
        out.append(base + float(statistics.median(a - b for a, b in zip(t, times[0], strict=True))))
    return out
