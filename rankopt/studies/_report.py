"""One standalone HTML page summarising a finished study."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from rankopt.errors import RankoptError

from ._export import plan_dict, select_trial
from ._figures import plot_history, plot_layer_map, plot_pareto_front
from ._front import ordered_ranks, pareto_front, queued_trials_line
from ._html import figures_html, page_html

__all__ = ["front_table_html", "report"]


def _fmt_int(value: Any) -> str:
    return "" if pd.isna(value) else f"{int(value):,}"


def _fmt_pct(value: Any) -> str:
    return "" if pd.isna(value) else f"{float(value):.2%}"


def _fmt_ratio(value: Any) -> str:
    return "" if pd.isna(value) else f"{float(value):.3f}"


def _fmt_ms(value: Any) -> str:
    return "" if pd.isna(value) else f"{float(value):.2f}"


def front_table_html(table: pd.DataFrame) -> str:
    """HTML ``<table>`` of a :func:`pareto_front` frame (numbers formatted, text escaped)."""
    shown = table.copy()
    shown["trial"] = [("" if pd.isna(v) else str(int(v))) for v in shown["trial"]]
    formatters = {
        "accuracy": _fmt_pct,
        "accuracy_before_finetune": _fmt_pct,
        "macs": _fmt_int,
        "n_params": _fmt_int,
        "macs_ratio": _fmt_ratio,
        "params_ratio": _fmt_ratio,
        "latency_ms": _fmt_ms,
    }
    for col, fmt in formatters.items():
        shown[col] = [fmt(v) for v in shown[col]]
    html: str = shown.to_html(
        index=False, escape=True, classes="front", border=0, table_id="pareto-front"
    )
    return html


def _settings_html(study: optuna.Study) -> str:
    attrs = dict(study.user_attrs)
    rows: list[tuple[str, Any]] = []
    for key in ("model", "data", "fingerprint", "input_shape", "objectives", "budget", "dense"):
        if key in attrs:
            rows.append((key, attrs.pop(key)))
    settings = attrs.pop("settings", None)
    rows.extend(sorted(attrs.items()))
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    rows.append(("trials", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    queued = queued_trials_line(study)
    if queued:
        rows.append(("queued", queued))
    rows.append(
        ("directions", ", ".join(d.name.lower() for d in study.directions)),
    )
    body = "".join(
        f"<tr><th class='l'>{escape(str(k))}</th><td class='l'>"
        f"{escape(v if isinstance(v, str) else json.dumps(v, default=str))}</td></tr>"
        for k, v in rows
    )
    out = f"<table>{body}</table>"
    if settings is not None:
        out += (
            "<h3>Search settings</h3><pre>"
            + escape(json.dumps(settings, indent=2, sort_keys=True, default=str))
            + "</pre>"
        )
    return out


def _plan_html(study: optuna.Study) -> str:
    try:
        chosen = select_trial(study)
    except RankoptError as exc:
        return f"<p>No recommended plan: {escape(str(exc))}</p>"
    plan = plan_dict(study, chosen)
    metrics = plan.get("metrics", {})
    head = (
        f"<p>Trial <b>{chosen.number}</b>: the best within the study budget (lowest validation "
        f"loss after the proxy fine-tune) — accuracy "
        f"{_fmt_pct(metrics.get('accuracy', math.nan))}, "
        f"{_fmt_int(metrics.get('macs', math.nan))} MACs "
        f"(ratio {_fmt_ratio(metrics.get('macs_ratio', math.nan))}), "
        f"{_fmt_int(metrics.get('n_params', math.nan))} parameters "
        f"(ratio {_fmt_ratio(metrics.get('params_ratio', math.nan))}). "
        f"Export it with <code>rankopt export --trial {chosen.number}</code>.</p>"
    )
    rows = "".join(
        "<tr>"
        f"<td class='l'>{escape(str(e.get('layer')))}</td>"
        f"<td class='l'>{escape(str(e.get('method')))}</td>"
        "<td class='l'>"
        + escape(", ".join(f"{k}={v}" for k, v in ordered_ranks(e.get("ranks") or {})))
        + "</td>"
        f"<td class='l'>{escape(json.dumps(e.get('options') or {}, sort_keys=True))}</td>"
        f"<td class='l'>{escape(str(list(e.get('weight_shape') or [])))}</td>"
        "</tr>"
        for e in plan.get("layers") or []
    )
    return (
        head + "<table class='plan'><tr><th class='l'>layer</th><th class='l'>method</th>"
        "<th class='l'>ranks</th><th class='l'>options</th><th class='l'>weight shape</th></tr>"
        + rows
        + "</table>"
    )


def report(study: optuna.Study, path: str | Path) -> Path:
    """Write one standalone HTML report of a finished study (works offline).

    The page holds the study settings (model, data, budget, objectives, search settings,
    dense metrics, trial counts by state, the queued trials), the Pareto front table, the
    three figures (front, per-layer map, history; plotly.js embedded once) and the detail of
    the recommended plan (the best trial within the study budget, as ``export_plan`` picks it).

    Args:
        study: A loaded study.
        path: Output ``.html`` file; its parent directory must exist.

    Returns:
        The path written.
    """
    table = pareto_front(study)
    n_front = int((table["kind"] == "trial").sum())
    figures = [plot_pareto_front(study), plot_layer_map(study), plot_history(study)]
    body = (
        "<h2>Study</h2>"
        + _settings_html(study)
        + f"<h2>Pareto front ({n_front} trials)</h2>"
        + "<p>Rows of kind <code>dense</code>, <code>vbmf_seed</code> and "
        "<code>recommended</code> are references, not front members (the recommended plan has "
        "the lowest validation loss, which need not put it on the accuracy front).</p>"
        + front_table_html(table)
        + "<h2>Figures</h2>"
        + figures_html(figures)
        + "<h2>Recommended plan</h2>"
        + _plan_html(study)
    )
    path = Path(path)
    path.write_text(page_html(f"rankopt report: study {study.study_name}", body), encoding="utf-8")
    return path
