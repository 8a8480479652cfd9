"""Plotly figures of a finished study, rendered from the tables in :mod:`._front`."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go

from rankopt.errors import RankoptError

from . import _methods
from ._axes import (
    BUDGET_SHAPE_NAME,
    DENSE_SHAPE_NAME,
    add_reference_lines,
    budget_x,
    x_range,
    y_range,
)
from ._front import (
    all_trials_table,
    completed_trials,
    cost_column,
    dense_metrics,
    front_trials,
    layer_label,
    ordered_ranks,
    pareto_front,
)

__all__ = [
    "BUDGET_SHAPE_NAME",
    "DENSE_SHAPE_NAME",
    "FRONT_TRACE_NAME",
    "plot_history",
    "plot_layer_map",
    "plot_pareto_front",
]

#: Name of the front trace in :func:`plot_pareto_front` (stable: tests and tools find it).
FRONT_TRACE_NAME = "Pareto front"

_AXIS_TITLES: dict[str, str] = {
    "macs_ratio": "MACs, % of the dense model",
    "params_ratio": "parameters, % of the dense model",
    "macs": "MACs per image",
    "n_params": "parameters",
    "latency_ms": "latency (ms, CPU, batch 1)",
}
#: The share-of-dense column shown for a cost objective by default.
_RATIO_OF: dict[str, str] = {"macs": "macs_ratio", "n_params": "params_ratio"}


def _wrap_layers(summary: str, per_line: int = 3) -> str:
    """Break a ``" | "``-separated layer summary into hover lines of ``per_line`` layers."""
    parts = summary.split(" | ") if summary else []
    lines = [" | ".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line)]
    return "<br>".join(lines)


def _hover(df: pd.DataFrame, x: str) -> tuple[list[list[Any]], str]:
    custom = [
        [
            "dense" if pd.isna(r.trial) else f"trial {int(r.trial)}",
            r.macs_ratio,
            _wrap_layers(r.layers),
            r.macs,
            r.n_params,
            r.params_ratio,
        ]
        for r in df.itertuples()
    ]
    template = (
        "<b>%{customdata[0]}</b><br>accuracy %{y:.2%}<br>"
        "MACs %{customdata[1]:.1%} of dense (%{customdata[3]:,.0f})<br>"
        "params %{customdata[5]:.1%} of dense (%{customdata[4]:,.0f})<br>"
        "<b>plan</b>: %{customdata[2]}<extra></extra>"
    )
    if x == "latency_ms":
        template = template.replace("<br>params", "<br>latency %{x:.2f} ms<br>params")
    return custom, template


def _add_trial_traces(
    fig: go.Figure, table: pd.DataFrame, everything: pd.DataFrame, front: pd.DataFrame, x: str
) -> None:
    """Every trial (faint), the front (line), the VBMF seed and the recommended plan."""
    custom, template = _hover(everything, x)
    fig.add_trace(
        go.Scatter(
            x=everything[x],
            y=everything["accuracy"],
            mode="markers",
            name="All trials",
            marker={"color": "rgba(120,120,120,0.35)", "size": 6},
            customdata=custom,
            hovertemplate=template,
        )
    )
    custom, template = _hover(front, x)
    fig.add_trace(
        go.Scatter(
            x=front[x],
            y=front["accuracy"],
            mode="lines+markers",
            name=FRONT_TRACE_NAME,
            line={"color": "#d62728", "shape": "linear"},
            marker={"color": "#d62728", "size": 9},
            customdata=custom,
            hovertemplate=template,
        )
    )
    for kind, name, symbol, color, line_width in (
        ("vbmf_seed", "VBMF seed", "diamond", "#1f77b4", 1),
        ("recommended", "Recommended plan", "circle-open", "#2ca02c", 3),
    ):
        ref = table[table["kind"] == kind]
        if ref.empty or ref[x].isna().all():
            continue
        custom, template = _hover(ref, x)
        fig.add_trace(
            go.Scatter(
                x=ref[x],
                y=ref["accuracy"],
                mode="markers",
                name=name,
                marker={
                    "symbol": symbol,
                    "size": 15,
                    "color": color,
                    "line": {"width": line_width},
                },
                customdata=custom,
                hovertemplate=template,
            )
        )


def plot_pareto_front(study: optuna.Study, *, x: str | None = None) -> go.Figure:
    """Accuracy vs cost: every completed trial faint, the Pareto front highlighted.

    The x axis is the cost as a share of the dense model's (``macs_ratio`` by default, shown
    in %) over the range the trials cover; the dense model is a labelled horizontal line at
    its accuracy (layout shape ``"dense"``), the study's budget a labelled vertical dashed
    line (layout shape ``"budget"``) when one is set for the x axis. The y axis runs from
    the lowest front or reference point to the highest point: trials far below the front
    stay in the figure but out of view (the axis title says how many).

    The front trace is named :data:`FRONT_TRACE_NAME` (``"Pareto front"``) and has one
    marker per front row of :func:`pareto_front`. The VBMF seed trial (diamond) and the
    recommended trial (large open circle: the plan ``rankopt export`` exports, which need
    not be on the front) are their own traces. Hovering a point shows the trial number,
    accuracy, MACs and parameters, and its per-layer plan.

    Args:
        study: A loaded study.
        x: Column for the x axis: ``"macs_ratio"``, ``"params_ratio"``, ``"macs"``,
            ``"n_params"`` or ``"latency_ms"``. Default: the share of dense of the study's
            cost objective (``"macs_ratio"``; ``"params_ratio"`` for a parameter objective,
            ``"latency_ms"`` for a latency objective).

    Returns:
        The plotly figure.

    Raises:
        RankoptError: ``x`` is not one of the columns above.
    """
    x = x or _RATIO_OF.get(cost_column(study), cost_column(study))
    if x not in _AXIS_TITLES:
        raise RankoptError(f"x axis {x!r} is not allowed; choose one of: {', '.join(_AXIS_TITLES)}")
    table = pareto_front(study)
    everything = all_trials_table(study)
    front = table[table["kind"] == "trial"].sort_values([x, "trial"])
    dense_accuracy = dense_metrics(study).get("accuracy", math.nan)
    fig = go.Figure()

    _add_trial_traces(fig, table, everything, front, x)
    budget = budget_x(study, x)
    percent = x.endswith("_ratio")
    add_reference_lines(fig, budget, dense_accuracy, percent=percent)
    y_span = y_range(table, everything, dense_accuracy)
    hidden = 0 if y_span is None else int((everything["accuracy"] < y_span[0]).sum())
    y_title = "validation accuracy"
    if hidden:
        y_title += f" ({hidden} trial{'s' if hidden > 1 else ''} below the axis)"
    fig.update_layout(
        title=f"Pareto front of study {study.study_name!r}",
        xaxis_title=_AXIS_TITLES[x],
        yaxis_title=y_title,
        yaxis_tickformat=".1%",
        template="plotly_white",
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": -0.25},
    )
    if percent:
        fig.update_xaxes(tickformat=".1%")
    x_span = x_range(everything, table, x, budget)
    if x_span is not None:
        fig.update_xaxes(range=x_span)
    if y_span is not None:
        fig.update_yaxes(range=y_span)
    return fig


def plot_layer_map(study: optuna.Study) -> go.Figure:
    """Per-layer method (colour) and rank fraction (text) of the front trials.

    Rows are front trials (by MACs, smallest at the top), columns layers in model order.
    The text shows the ranks and the mean rank / full rank where the full rank follows from
    the weight shape; hovering gives method, ranks, options and weight shape.

    Args:
        study: A loaded study.

    Returns:
        The plotly figure (a heatmap; empty when the front has no plans).
    """
    front = pareto_front(study, include_reference=False)
    by_number = {t.number: t for t in front_trials(study)}
    plans = []
    for n in front["trial"]:
        plan = by_number[int(n)].user_attrs.get("plan") or {}
        plans.append((int(n), {e.get("layer"): e for e in plan.get("layers") or []}))
    layers: list[str] = []
    for _, entries in plans:
        layers.extend(name for name in entries if name not in layers)
    used = {str(e.get("method")) for _, entries in plans for e in entries.values()}
    methods = sorted(used)
    z, text, hover = [], [], []
    for number, entries in plans:
        z_row: list[float | None] = []
        text_row: list[str] = []
        hover_row: list[str] = []
        for name in layers:
            entry = entries.get(name)
            if entry is None:
                z_row.append(None)
                text_row.append("")
                hover_row.append(f"trial {number}<br>{name}: not in plan (dense)")
                continue
            fraction = _methods.rank_fraction(entry)
            label = layer_label(entry)
            frac_text = "" if math.isnan(fraction) else f"<br>{fraction:.0%}"
            z_row.append(float(methods.index(str(entry.get("method")))))
            text_row.append(label + frac_text)
            ranks = ", ".join(f"{k}={v}" for k, v in ordered_ranks(entry.get("ranks") or {}))
            hover_row.append(
                f"trial {number}<br>{name}: {entry.get('method')} {ranks}<br>"
                f"rank fraction {'n/a' if math.isnan(fraction) else f'{fraction:.1%}'}<br>"
                f"options {entry.get('options') or {}}<br>weight {entry.get('weight_shape')}"
            )
        z.append(z_row)
        text.append(text_row)
        hover.append(hover_row)
    n_methods = len(methods)
    colorscale = []
    for i, m in enumerate(methods):
        color = _methods.color(m, i)
        colorscale += [[i / n_methods, color], [(i + 1) / n_methods, color]]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=layers,
            y=[f"trial {n}" for n, _ in plans],
            text=text,
            texttemplate="%{text}",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=colorscale,
            zmin=-0.5,
            zmax=n_methods - 0.5,
            xgap=2,
            ygap=2,
            name="layer map",
            colorbar={
                "title": {"text": "method"},
                "tickvals": list(range(n_methods)),
                "ticktext": [_methods.label(m) for m in methods],
            },
        )
    )
    fig.update_layout(
        title="Per-layer method and rank fraction on the Pareto front",
        xaxis_title="layer",
        yaxis_title="front trial (fewest MACs at the top)",
        yaxis_autorange="reversed",
        template="plotly_white",
        height=max(320, 60 + 40 * len(plans)),
    )
    return fig


def plot_history(study: optuna.Study) -> go.Figure:
    """Accuracy of every completed trial over trial number, with the best-so-far line.

    Args:
        study: A loaded study.

    Returns:
        The plotly figure: trace ``"Trials"`` (one marker per completed trial, front trials
        highlighted by colour) and trace ``"Best so far"``.
    """
    table = all_trials_table(study)
    custom, template = _hover(table, "macs")
    best = table["accuracy"].cummax()
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=table["trial"].astype(float),
            y=table["accuracy"],
            mode="markers",
            name="Trials",
            marker={
                "color": ["#d62728" if f else "rgba(100,100,100,0.6)" for f in table["on_front"]],
                "size": 7,
            },
            customdata=custom,
            hovertemplate=template,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=table["trial"].astype(float),
            y=best,
            mode="lines",
            name="Best so far",
            line={"shape": "hv", "color": "#1f77b4"},
            hoverinfo="skip",
        )
    )
    n_total = len(study.get_trials(deepcopy=False))
    fig.update_layout(
        title=f"Accuracy over trials ({len(completed_trials(study))} of {n_total} completed; "
        "red: on the Pareto front)",
        xaxis_title="trial number",
        yaxis_title="validation accuracy",
        yaxis_tickformat=".1%",
        template="plotly_white",
    )
    return fig
