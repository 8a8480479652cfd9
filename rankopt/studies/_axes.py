"""The Pareto figure's axes: ranges fitted to what a reader needs to see, and the budget
and dense reference lines drawn on them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import optuna
import pandas as pd
import plotly.graph_objects as go

from rankopt.storage import StudyRecord

from ._trials import dense_metrics

__all__ = [
    "BUDGET_SHAPE_NAME",
    "DENSE_SHAPE_NAME",
    "add_reference_lines",
    "budget_x",
    "x_range",
    "y_range",
]

#: Name of the budget line shape in :func:`plot_pareto_front`.
BUDGET_SHAPE_NAME = "budget"
#: Name of the dense accuracy line shape in :func:`plot_pareto_front`.
DENSE_SHAPE_NAME = "dense"


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


_BUDGET_KEYS: dict[str, tuple[str, str]] = {
    # x column -> (budget key, dense key used to turn the budget into a ratio)
    "macs": ("max_macs", ""),
    "macs_ratio": ("max_macs", "macs"),
    "n_params": ("max_params", ""),
    "params_ratio": ("max_params", "n_params"),
}


def budget_x(study: optuna.Study, x: str) -> float | None:
    """The study's budget on the x axis ``x`` (a share of dense for ``*_ratio``), or None."""
    keys = _BUDGET_KEYS.get(x)
    budget = StudyRecord.of(study).budget_json()
    if keys is None or budget.get(keys[0]) is None:
        return None
    value = float(budget[keys[0]])
    if keys[1]:
        dense = dense_metrics(study).get(keys[1])
        if not dense or math.isnan(dense):
            return None
        value /= dense
    return value


def add_reference_lines(
    fig: go.Figure, budget: float | None, dense_accuracy: float, *, percent: bool
) -> None:
    """The budget (vertical, dashed, layout shape ``"budget"``) and the dense model
    (horizontal, dotted, ``"dense"``), each labelled; either left out when unknown."""
    if budget is not None:
        fig.add_shape(
            type="line",
            name=BUDGET_SHAPE_NAME,
            xref="x",
            yref="paper",
            x0=budget,
            x1=budget,
            y0=0,
            y1=1,
            line={"dash": "dash", "color": "#2ca02c", "width": 2},
        )
        fig.add_annotation(
            x=budget,
            y=1,
            xref="x",
            yref="paper",
            text=f"budget {budget:.1%}" if percent else f"budget {budget:,.4g}",
            showarrow=False,
            yanchor="bottom",
            font={"color": "#2ca02c"},
        )
    if math.isfinite(dense_accuracy):
        fig.add_shape(
            type="line",
            name=DENSE_SHAPE_NAME,
            xref="paper",
            yref="y",
            x0=0,
            x1=1,
            y0=dense_accuracy,
            y1=dense_accuracy,
            line={"dash": "dot", "color": "#111111", "width": 1.5},
        )
        fig.add_annotation(
            x=0,
            y=dense_accuracy,
            xref="paper",
            yref="y",
            text=f"dense model {dense_accuracy:.2%}" + (" (100 % of the cost)" if percent else ""),
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
        )
