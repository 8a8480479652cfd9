"""One standalone HTML page summarising a finished study."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from rankopt.errors import RankoptError
from rankopt.storage import StudyRecord

from ._export import select_trial
from ._figures import plot_history, plot_layer_map, plot_pareto_front
from ._front import dense_metrics, pareto_front, queued_trials_line
from ._html import figures_html, page_html
from ._profile_figure import plot_sensitivity
from ._summary import next_commands, plan_summary

__all__ = ["front_table_html", "report"]


def _fmt_int(value: Any) -> str:
    return "" if pd.isna(value) else f"{int(value):,}"


def _fmt_pct(value: Any) -> str:
    return "" if pd.isna(value) else f"{float(value):.2%}"


def _fmt_ratio(value: Any) -> str:
    return "" if pd.isna(value) else f"{float(value):.3f}"


def _fmt_ms(value: Any) -> str:
    return "" if pd.isna(value) else f"{float(value):.2f}"


_LONG_CELL = 240
"""Front-table cells longer than this (characters) fold into a <details> element."""


def front_table_html(table: pd.DataFrame) -> str:
    """HTML ``<table>`` of a :func:`pareto_front` frame (numbers formatted, text escaped).

    A ``layers`` cell longer than 240 characters shows its first layers and folds the rest
    into a ``<details>`` element.
    """
    shown = table.copy()
    shown["trial"] = [("" if pd.isna(v) else str(int(v))) for v in shown["trial"]]
    formatters = {
        "accuracy": _fmt_pct,
        "accuracy_before_finetune": _fmt_pct,
        "macs": _fmt_int,
        "n_params": _fmt_int,
        "macs_ratio": _fmt_ratio,
        "params_ratio": _fmt_ratio,
        "latency_ratio_batch1": _fmt_ratio,
        "latency_ratio_batch64": _fmt_ratio,
        "latency_ms": _fmt_ms,
    }
    for col in shown.columns:
        fmt = formatters.get(col)
        shown[col] = [escape(fmt(v) if fmt else str(v)) for v in shown[col]]
    shown["layers"] = [_fold(cell) for cell in shown["layers"]]
    html: str = shown.to_html(
        index=False, escape=False, classes="front", border=0, table_id="pareto-front"
    )
    return html


def _fold(cell: str) -> str:
    """An escaped text cell, its tail in a <details> element when it is long."""
    if len(cell) <= _LONG_CELL:
        return cell
    head = cell[:_LONG_CELL].rsplit(" | ", 1)[0]
    return f"<details><summary>{head} | ...</summary>{cell}</details>"


def _compact(value: Any) -> str:
    """A settings value as a person reads it: lists joined, dicts as ``key value`` pairs."""
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ", ".join(_compact(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k} {_compact(v)}" for k, v in value.items()) or "none"
    return str(value)


def _budget_text(budget: Any, dense: Mapping[str, float]) -> str:
    """``MACs <= 4,740,384 (50.0 % of dense)``, one clause per budgeted resource."""
    if not isinstance(budget, dict):
        return _compact(budget)
    parts = []
    for key, what, dense_key in (
        ("max_macs", "MACs", "macs"),
        ("max_params", "params", "n_params"),
    ):
        bound = budget.get(key)
        if bound is None:
            continue
        share = dense.get(dense_key)
        of_dense = f" ({float(bound) / share:.1%} of dense)" if share else ""
        parts.append(f"{what} <= {int(bound):,}{of_dense}")
    for batch, ms in budget.get("max_latency_ms") or []:
        parts.append(f"predicted latency <= {float(ms):.3f} ms at batch {batch}")
    for batch, ms in budget.get("latency_cap_ms") or []:
        parts.append(f"never slower than dense: <= {float(ms):.3f} ms at batch {batch}")
    return "; ".join(parts) or "none"


def _dense_text(dense: Any) -> str:
    """``accuracy 98.60 %, 9,480,768 MACs, 77,754 params, latency 0.21 ms (batch 1)``."""
    if not isinstance(dense, dict):
        return _compact(dense)
    parts = [
        f"validation accuracy {_fmt_pct(dense.get('accuracy', math.nan))}",
        f"{_fmt_int(dense.get('macs', math.nan))} MACs",
        f"{_fmt_int(dense.get('n_params', math.nan))} params",
    ]
    latency = dense.get("latency_ms")
    if isinstance(latency, dict):
        parts += [f"latency {float(ms):.3f} ms (batch {b})" for b, ms in latency.items()]
    return ", ".join(parts)


def _settings_rows(study: optuna.Study) -> list[tuple[str, str]]:
    """The study's settings as (name, readable value) rows; the profile is left to its figure."""
    attrs = dict(study.user_attrs)
    record = StudyRecord.from_user_attrs(attrs)
    dense = dense_metrics(study)
    rows = [
        ("model", _compact(record.model or "")),
        ("data", _compact(record.data or "")),
        ("dense model", _dense_text(record.dense.to_json())),
        ("budget", _budget_text(record.budget_json(), dense)),
        ("objectives", _compact(list(record.objectives))),
        ("directions", ", ".join(d.name.lower() for d in study.directions)),
    ]
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    rows.append(("trials", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    queued = queued_trials_line(study)
    if queued:
        rows.append(("queued", queued))
    profile = attrs.get("sensitivity")
    if isinstance(profile, dict):
        n_pairs = sum(len(m) for m in (profile.get("points") or {}).values())
        rows.append(
            (
                "sensitivity profile",
                f"{n_pairs} (layer, method) pairs on {profile.get('n_images', '?')} images, "
                f"{float(profile.get('wall_time_s', 0.0)):.0f} s (figure below)",
            )
        )
    rows += [(f"search: {k}", _compact(v)) for k, v in sorted(record.settings.items())]
    shown = {"model", "data", "dense", "budget", "objectives", "sensitivity", "settings"}
    rows += [(k, _compact(v)) for k, v in sorted(attrs.items()) if k not in shown]
    return rows


def _two_columns(rows: Sequence[tuple[str, str]], table_id: str) -> str:
    body = "".join(
        f"<tr><th class='l'>{escape(k)}</th><td class='l'>{escape(v)}</td></tr>" for k, v in rows
    )
    return f"<table id='{table_id}'>{body}</table>"


def _raw_html(study: optuna.Study) -> str:
    """Every study attribute as JSON, folded: for the curious, not for the first read."""
    raw = json.dumps(dict(study.user_attrs), indent=1, sort_keys=True, default=str)
    return (
        "<details id='raw'><summary>Raw study attributes (JSON, "
        f"{len(raw):,} characters)</summary><pre>{escape(raw)}</pre></details>"
    )


def _summary_html(study: optuna.Study, study_args: Sequence[str]) -> str:
    """The first screen: the recommended plan, what it gains, and how to reproduce it."""
    summary = plan_summary(study)
    if summary is None:
        try:
            select_trial(study)
        except RankoptError as exc:
            return f"<p>No recommended plan: {escape(str(exc))}</p>"
        return "<p>No recommended plan.</p>"
    seed = f" (seed <code>{escape(summary.seed)}</code>)" if summary.seed else ""
    delta = summary.accuracy_change_points
    change = (
        f" (<b>{delta:+.2f} points</b> vs the dense model's {_fmt_pct(summary.dense_accuracy)})"
        if math.isfinite(delta)
        else ""
    )
    cells = [
        ("validation accuracy", f"{_fmt_pct(summary.accuracy)}{change}"),
        ("MACs", f"<b>{summary.macs_ratio:.1%}</b> of dense ({_fmt_int(summary.macs)} per image)"),
        (
            "parameters",
            f"<b>{summary.params_ratio:.1%}</b> of dense ({_fmt_int(summary.n_params)})",
        ),
    ]
    for batch, ratio in sorted(summary.latency_ratio.items()):
        cells.append(
            (f"latency, batch {batch}", f"<b>{ratio:.1%}</b> of dense ({summary.latency_source})")
        )
    numbers = "".join(f"<tr><th class='l'>{k}</th><td class='l'>{v}</td></tr>" for k, v in cells)
    layers = "".join(
        f"<tr><td class='l'>{escape(c.layer)}</td><td class='l'>{escape(c.label)}</td>"
        f"<td class='l'><code>{escape(c.short)}</code></td>"
        f"<td>{'' if math.isnan(c.rank_fraction) else f'{c.rank_fraction:.0%}'}</td></tr>"
        for c in summary.layers
    )
    commands = "\n".join(escape(c) for c in next_commands(study, study_args=study_args))
    return (
        f"<p class='lead'>The recommended plan is <b>trial {summary.trial}</b>{seed}: the "
        "lowest validation loss after the proxy fine-tune within the study's budget.</p>"
        f"<table id='gains'>{numbers}</table>"
        "<h3>Export it, apply it, fine-tune it</h3>"
        f"<pre id='commands'>{commands}</pre>"
        "<h3>Per-layer methods</h3>"
        "<table id='plan-layers'><tr><th class='l'>layer</th><th class='l'>method</th>"
        "<th class='l'>ranks</th><th>rank / full rank</th></tr>" + layers + "</table>"
    )


def report(study: optuna.Study, path: str | Path, *, study_args: Sequence[str] = ()) -> Path:
    """Write one standalone HTML report of a finished study (works offline).

    The page leads with the answer: the recommended plan (the one ``export_plan`` picks),
    its validation accuracy against dense in points, its MACs, parameters and (when the
    study has them) latency as shares of dense, the ``rankopt export`` / ``apply`` /
    ``finetune`` commands that reproduce it, and its per-layer methods. Then the Pareto
    front table, the figures (front, per-layer map, history, sensitivity profile;
    plotly.js embedded once), the settings as a two-column table, and every study
    attribute as JSON in a collapsed ``<details>`` element.

    Args:
        study: A loaded study.
        path: Output ``.html`` file; its parent directory must exist.
        study_args: What ``rankopt export`` needs to find the study, shown in the commands
            (default: nothing, the run directory's only study).

    Returns:
        The path written.
    """
    table = pareto_front(study)
    n_front = int((table["kind"] == "trial").sum())
    figures = [plot_pareto_front(study), plot_layer_map(study), plot_history(study)]
    if study.user_attrs.get("sensitivity"):
        figures.append(plot_sensitivity(study))
    body = (
        "<h2 id='recommended'>Recommended plan</h2>"
        + _summary_html(study, study_args)
        + f"<h2>Pareto front ({n_front} trial{'' if n_front == 1 else 's'})</h2>"
        + "<p>Rows of kind <code>dense</code>, <code>vbmf_seed</code> and "
        "<code>recommended</code> are references, not front members (the recommended plan has "
        "the lowest validation loss, which need not put it on the accuracy front).</p>"
        + front_table_html(table)
        + "<h2>Figures</h2>"
        + figures_html(figures)
        + "<h2>Study settings</h2>"
        + _two_columns(_settings_rows(study), "settings")
        + _raw_html(study)
    )
    path = Path(path)
    path.write_text(page_html(f"rankopt report: study {study.study_name}", body), encoding="utf-8")
    return path
