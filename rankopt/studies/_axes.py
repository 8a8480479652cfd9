"""Axis ranges of the Pareto figure, fitted to what a reader needs to see."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

__all__ = ["x_range", "y_range"]


def _span(values: Sequence[float]) -> tuple[float, float] | None:
    """(low, high) of the finite values, or None when there are none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return (min(finite), max(finite)) if finite else None


def _padded(low: float, high: float, *, share: float = 0.06, least: float) -> list[float]:
    """``[low, high]`` widened by ``share`` of its width on each side (at least ``least``)."""
    pad = max((high - low) * share, least)
    return [low - pad, high + pad]


def x_range(
    everything: pd.DataFrame, table: pd.DataFrame, x: str, budget: float | None
) -> list[float] | None:
    """The x range fitted to the trials (and the budget line); None when nothing is drawn."""
    xs = [*everything[x], *table[table["kind"] != "dense"][x]]
    if budget is not None:
        xs.append(budget)
    span = _span(xs)
    if span is None:
        return None
    least = 0.01 if x.endswith("_ratio") else 0.01 * max(abs(span[1]), 1e-9)
    return _padded(*span, least=least)


def y_range(
    table: pd.DataFrame, everything: pd.DataFrame, dense_accuracy: float
) -> list[float] | None:
    """The y range: the front, the references and the trials near them.

    A trial further below the lowest front or reference point than the height of what is
    above that point (at least 1 point of accuracy) is far below the front (a plan that
    fine-tuned badly): it does not stretch the axis; it stays in the figure, out of view,
    and the caller says how many.
    """
    anchors = _span([*table["accuracy"], dense_accuracy])
    top = _span([*everything["accuracy"], *table["accuracy"], dense_accuracy])
    if anchors is None or top is None:
        return None
    height = max(top[1] - anchors[0], 0.01)
    near = [a for a in everything["accuracy"] if a >= anchors[0] - height]
    low = min([anchors[0], *near])
    return _padded(low, min(top[1], 1.0), share=0.08, least=0.002)
