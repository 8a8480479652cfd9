"""Goals, the markdown file and the best-so-far plot of a Fashion-MNIST benchmark run.

Compute first (:func:`goals`, :func:`summary`), then render (:func:`markdown`,
:func:`write_curves`).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common.report import md_table, mean_std
from benchmarks.fashion.searches import SearchRun

POINT = 0.01
"""One accuracy point."""
SEARCH_ROWS = ("search_tpe", "search_random")


def _acc(rows: Sequence[dict[str, Any]]) -> list[float]:
    return [r["test_accuracy"] for r in rows if math.isfinite(r.get("test_accuracy", math.nan))]


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def by_label(rows: Sequence[dict[str, Any]], budget: float) -> dict[str, list[dict[str, Any]]]:
    """Rows of one budget grouped by label, in first-seen order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["budget"] == budget:
            out.setdefault(r["label"], []).append(r)
    return out


def curve_mean(runs: Sequence[SearchRun]) -> list[float]:
    """Mean best-so-far curve over seeds (as long as the shortest curve)."""
    if not runs:
        return []
    n = min(len(r.best_so_far) for r in runs)
    return [_mean([r.best_so_far[i] for r in runs]) for i in range(n)]


def _verdict(ok: bool, gap: float) -> str:
    return f"**{'met' if ok else 'not met'}** ({gap / POINT:+.2f} points)"


def goals(
    rows: Sequence[dict[str, Any]],
    runs: Sequence[SearchRun],
    budgets: Sequence[float],
    *,
    dense_test: float,
    seed_row: dict[str, Any],
    dense_ft: Sequence[float],
) -> list[str]:
    """One line per goal of issue 31: the numbers, met or not, and by how much."""
    lines = []
    tpe_means: dict[float, float] = {}
    for b in budgets:
        groups = by_label(rows, b)
        tpe = _mean(_acc(groups.get("search_tpe", [])))
        tpe_means[b] = tpe
        rnd = _mean(_acc(groups.get("search_random", [])))
        others = {
            label: _mean(_acc([r for r in g if not r.get("over_budget")]))
            for label, g in groups.items()
            if label not in SEARCH_ROWS
        }
        others = {k: v for k, v in others.items() if math.isfinite(v)}
        best_label = max(others, key=lambda k: others[k]) if others else "none"
        best = others.get(best_label, math.nan)
        margin = 0.0 if b >= 0.5 else POINT
        gap = tpe - (best + margin)
        lines.append(
            f"{b:.0%}: search_tpe {tpe:.4f} vs the best other row ({best_label}) {best:.4f}, "
            f"goal >= it + {margin / POINT:g} point(s): {_verdict(gap >= 0, gap)}"
        )
        gap = tpe - (rnd + 0.5 * POINT)
        lines.append(
            f"{b:.0%}: search_tpe {tpe:.4f} vs search_random {rnd:.4f}, goal >= it + 0.5 "
            f"point: {_verdict(gap >= 0, gap)}"
        )
        tpe_curve = curve_mean([r for r in runs if r.budget == b and r.sampler == "tpe"])
        rnd_curve = curve_mean([r for r in runs if r.budget == b and r.sampler == "random"])
        if tpe_curve and rnd_curve:
            half = tpe_curve[max(0, len(tpe_curve) // 2 - 1)]
            gap = half - rnd_curve[-1]
            lines.append(
                f"{b:.0%}: anytime: TPE's best proxy val accuracy after half the trials "
                f"{half:.4f} vs random's after all {rnd_curve[-1]:.4f} (mean over seeds): "
                f"{_verdict(gap >= 0, gap)}"
            )
    ordered = sorted(budgets, reverse=True)
    for loose, tight in itertools.pairwise(ordered):
        gap = tpe_means[loose] - tpe_means[tight]
        lines.append(
            f"monotone: search_tpe at {loose:.0%} {tpe_means[loose]:.4f} vs at {tight:.0%} "
            f"{tpe_means[tight]:.4f}, goal: not below: {_verdict(gap >= 0, gap)}"
        )
    seed_acc = seed_row.get("test_accuracy", math.nan)
    gap = seed_acc - (dense_test - 2 * POINT)
    lines.append(
        f"seed recipe after the final FT {seed_acc:.4f} vs dense {dense_test:.4f}, goal within "
        f"2 points: {_verdict(gap >= 0, gap)}"
    )
    ft = _mean(list(dense_ft))
    gap = ft - dense_test
    lines.append(
        f"the final fine-tune keeps dense: dense + FT {ft:.4f} vs dense {dense_test:.4f} "
        f"(goal: not below by more than 0.2 points, the noise of 10,000 test images): "
        f"{_verdict(gap >= -0.2 * POINT, gap)}"
    )
    return lines


_LATENCY_KEYS = ("latency_ort_b1", "latency_ort_b64", "latency_torch_b1", "latency_torch_b64")


def budget_table(rows: Sequence[dict[str, Any]], budget: float) -> str:
    """The markdown table of one budget: one line per label, mean ± std over seeds."""
    table = []
    for label, group in by_label(rows, budget).items():
        first = group[0]
        lat = [first.get(k, math.nan) for k in _LATENCY_KEYS]
        table.append(
            [
                label,
                first.get("macs_ratio", math.nan),
                first.get("params_ratio", math.nan),
                mean_std([r.get("accuracy_calibrated", math.nan) for r in group]),
                mean_std([r.get("test_accuracy", math.nan) for r in group]),
                *lat,
                first.get("note", ""),
            ]
        )
    table.sort(key=lambda row: -_mean(_acc(by_label(rows, budget)[row[0]])) if row else 0)
    return md_table(
        [
            "row",
            "MACs ratio",
            "params ratio",
            "calibrated, before FT",
            "after final FT (test)",
            "ORT b1",
            "ORT b64",
            "torch b1",
            "torch b64",
            "note",
        ],
        table,
    )


def search_table(runs: Sequence[SearchRun]) -> str:
    """Per study: trials' mean wall time, the profile's time and share, the study's time."""
    rows = []
    for r in runs:
        trials_s = r.trial_wall_s * len(r.best_so_far)
        share = r.sensitivity_s / (r.sensitivity_s + trials_s) if trials_s > 0 else math.nan
        rows.append(
            [
                f"{r.budget:.0%}",
                r.sampler,
                r.seed,
                len(r.best_so_far),
                r.trial_wall_s,
                r.sensitivity_s,
                share,
                r.wall_s,
            ]
        )
    return md_table(
        [
            "budget",
            "sampler",
            "seed",
            "trials",
            "trial wall s (mean)",
            "sensitivity profile s",
            "profile share of a search",
            "study wall s (this run)",
        ],
        rows,
        digits=2,
    )


def write_curves(runs: Sequence[SearchRun], budgets: Sequence[float], out: Path) -> Path:
    """Best-so-far curves (mean over seeds) of both samplers per budget, offline HTML."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles = [f"{b:.0%} MACs" for b in budgets]
    fig = make_subplots(rows=1, cols=len(budgets), subplot_titles=titles)
    colors = {"tpe": "#1f77b4", "random": "#ff7f0e"}
    for col, b in enumerate(budgets, start=1):
        for sampler in ("tpe", "random"):
            curve = curve_mean([r for r in runs if r.budget == b and r.sampler == sampler])
            fig.add_trace(
                go.Scatter(
                    x=list(range(1, len(curve) + 1)),
                    y=curve,
                    mode="lines+markers",
                    name=sampler,
                    legendgroup=sampler,
                    showlegend=col == 1,
                    line={"color": colors[sampler]},
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="trials", row=1, col=col)
    fig.update_yaxes(title_text="best proxy val accuracy so far (mean over seeds)", row=1, col=1)
    fig.update_layout(title="Best so far: rankopt's default search (TPE) vs random search")
    path = out / "fashion_best_so_far.html"
    fig.write_html(path, include_plotlyjs="directory")
    return path
