"""BENCHMARKS.md writing (markdown tables, machine facts) and the plotly figures."""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

import rankopt
from rankopt.latency import machine_signature


def machine_facts() -> dict[str, str]:
    """CPU model, cores, torch / rankopt / Python versions, date, load average."""
    cpu = machine_signature()["cpu"] or "unknown"
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "rankopt": rankopt.__version__,
        "python": platform.python_version(),
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "load": f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
    }


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers with fixed digits, NaN as ``n/a``, everything else as ``str``."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 4) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [fmt(v, digits).replace("|", "/") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_std(values: Sequence[float]) -> str:
    """``mean`` or ``mean ± std`` (sample std) of ``values``."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.4f}"
    return f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}"


def write_plots(
    out_dir: Path,
    budget_rows: Sequence[Mapping[str, Any]],
    fronts: Mapping[tuple[float, str], Sequence[tuple[float, float]]],
    latency_rows: Sequence[Mapping[str, Any]],
) -> list[Path]:
    """Write ``bench_accuracy.html`` and ``bench_latency.html`` (offline: the installed
    plotly's script is written as ``plotly.min.js`` in ``out_dir``, replacing any older copy,
    and loaded by relative path; it is not committed)."""
    budgets = sorted({float(r["budget"]) for r in budget_rows}, reverse=True)
    fig = make_subplots(
        rows=1,
        cols=max(1, len(budgets)),
        subplot_titles=[f"budget {100 * b:.0f}% of dense MACs" for b in budgets],
        shared_yaxes=True,
    )
    colors: dict[str, str] = {}
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
        "#17becf",
        "#000000",
    ]
    for col, budget in enumerate(budgets, start=1):
        for sampler in ("random", "tpe", "nsga2"):
            pts = fronts.get((budget, sampler), [])
            if not pts:
                continue
            color = colors.setdefault(f"search_{sampler}", palette[len(colors) % len(palette)])
            fig.add_trace(
                go.Scatter(
                    x=[p[1] for p in pts],
                    y=[p[0] for p in pts],
                    mode="markers",
                    marker={"symbol": "circle-open", "color": color, "size": 7},
                    name=f"{sampler} trials (val acc, proxy FT)",
                    legendgroup=f"trials_{sampler}",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        rows = [r for r in budget_rows if float(r["budget"]) == budget and r["seed"] == 0]
        for r in rows:
            color = colors.setdefault(str(r["method"]), palette[len(colors) % len(palette)])
            fig.add_trace(
                go.Scatter(
                    x=[r["macs_ratio"]],
                    y=[r["test_accuracy"]],
                    mode="markers",
                    marker={"symbol": "diamond", "size": 12, "color": color},
                    name=f"{r['method']} (test acc, final FT)",
                    legendgroup=str(r["method"]),
                    showlegend=col == 1,
                    hovertext=str(r.get("note", "")),
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="MACs / dense MACs", row=1, col=col)
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    fig.update_layout(title="Accuracy vs MACs per budget (seed 0)", height=600)

    lat = make_subplots(rows=1, cols=2, subplot_titles=["batch 1", "batch 64"])
    for col, key in ((1, "latency_ratio_b1"), (2, "latency_ratio_b64")):
        for r in latency_rows:
            lat.add_trace(
                go.Scatter(
                    x=[r["macs_ratio"]],
                    y=[r[key]],
                    mode="markers+text",
                    text=[str(r["label"])],
                    textposition="top center",
                    marker={"size": 10},
                    name=str(r["label"]),
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
        lat.add_trace(
            go.Scatter(
                x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot"}, name="latency = MACs"
            ),
            row=1,
            col=col,
        )
        lat.add_hline(y=1.0, line={"dash": "dash", "color": "grey"}, row=1, col=col)  # type: ignore[arg-type]
        lat.update_xaxes(title_text="MACs / dense MACs", row=1, col=col)
        lat.update_yaxes(title_text="CPU latency / dense latency", row=1, col=col)
    lat.update_layout(title="Realised CPU speed: latency ratio vs MACs ratio", height=550)

    out_dir.mkdir(parents=True, exist_ok=True)
    script = out_dir / "plotly.min.js"
    # plotly's own "directory" mode keeps an existing file: write the installed one first.
    script.write_text(get_plotlyjs(), encoding="utf-8")
    paths = [out_dir / "bench_accuracy.html", out_dir / "bench_latency.html"]
    for figure, path in zip((fig, lat), paths, strict=True):
        figure.write_html(path, include_plotlyjs="directory", full_html=True)
    return [*paths, script]
